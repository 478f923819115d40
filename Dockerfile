# syntax=docker/dockerfile:1.7
# Pareto gateway images (see README "Deploying"):
#   CPU (default):     docker build -t pareto:cpu .
#   GPU (TensorRT):    docker build --target gpu -t pareto:gpu .
# Both install torch==2.13.0 as the CPU wheel from PyTorch's CPU index before anything
# else, then install the project under a constraint naming that exact build
# (torch==2.13.0+cpu), so no resolver can swap in a CUDA torch: the same rule as
# `make install`. Compression jobs run on CPU torch in both images; the GPU image adds
# TensorRT for serving. Only the installed virtual environment reaches a final stage.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

# ---------------------------------------------------------------- CPU: build the venv
FROM ${PYTHON_IMAGE} AS builder
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN python -m venv /opt/venv \
 && echo "torch==${TORCH_VERSION}+cpu" > /opt/torch-constraint.txt \
 && pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}+cpu"
COPY pyproject.toml README.md ./
COPY pareto/ pareto/
COPY pareto_core/ pareto_core/
COPY pareto_cli/ pareto_cli/
COPY service/ service/
COPY runtimes/ runtimes/
COPY compressors/ compressors/
# Not editable: the package lands in site-packages and /src is left behind.
# onnx2torch without its torchvision requirement, as in `make install`.
RUN pip install --no-cache-dir --constraint /opt/torch-constraint.txt . \
 && pip install --no-cache-dir --no-deps onnx2torch==1.5.15 \
 && python -c "import torch, service.server; assert torch.version.cuda is None, torch.version.cuda"

# ---------------------------------------------------------------- GPU: build the venv
# Python 3.11 from Ubuntu 22.04 (the project requires 3.11; NVIDIA's TensorRT NGC images
# ship another Python), TensorRT from its pip wheel (it brings its own libraries; the base
# image brings CUDA and cuDNN). Whatever else the TensorRT runtime imports goes in
# GPU_PIP_PACKAGES.
FROM ${CUDA_IMAGE} AS gpu-builder
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG GPU_PIP_PACKAGES="tensorrt-cu12==11.4.0.106"
ARG DEBIAN_FRONTEND=noninteractive
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# Ubuntu's security updates replace package versions in its archive, so an exact
# apt pin would break later builds; the base image tag fixes the release (22.04).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN python3.11 -m venv /opt/venv \
 && echo "torch==${TORCH_VERSION}+cpu" > /opt/torch-constraint.txt \
 && pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}+cpu"
COPY pyproject.toml README.md ./
COPY pareto/ pareto/
COPY pareto_core/ pareto_core/
COPY pareto_cli/ pareto_cli/
COPY service/ service/
COPY runtimes/ runtimes/
COPY compressors/ compressors/
RUN pip install --no-cache-dir --constraint /opt/torch-constraint.txt . ${GPU_PIP_PACKAGES} \
 && pip install --no-cache-dir --no-deps onnx2torch==1.5.15

# ---------------------------------------------------------------- GPU: runtime
FROM ${CUDA_IMAGE} AS gpu
ARG DEBIAN_FRONTEND=noninteractive
ARG UID=10001
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid "${UID}" pareto \
 && useradd --system --uid "${UID}" --gid pareto --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin pareto \
 && mkdir -p /data \
 && chown pareto:pareto /data
COPY --from=gpu-builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PARETO_HOST=0.0.0.0 \
    PARETO_PORT=8001 \
    PARETO_METRICS_PORT=8002 \
    PARETO_HTTP_PORT=8000 \
    PARETO_DATA_DIR=/data \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER ${UID}:${UID}
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "pareto_cli.healthcheck"]
ENTRYPOINT ["pareto"]
CMD ["serve"]

# ---------------------------------------------------------------- CPU: runtime (default)
FROM ${PYTHON_IMAGE} AS cpu
ARG UID=10001
RUN groupadd --system --gid "${UID}" pareto \
 && useradd --system --uid "${UID}" --gid pareto --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin pareto \
 && mkdir -p /data \
 && chown pareto:pareto /data
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PARETO_HOST=0.0.0.0 \
    PARETO_PORT=8001 \
    PARETO_METRICS_PORT=8002 \
    PARETO_HTTP_PORT=8000 \
    PARETO_DATA_DIR=/data
USER ${UID}:${UID}
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "pareto_cli.healthcheck"]
ENTRYPOINT ["pareto"]
CMD ["serve"]
