"""A small client for the management API (`pareto.v1`), used by the CLI, tests and benches."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

from google.protobuf.message import Message

from pareto.v1 import (
    common_pb2,
    datasets_pb2_grpc,
    deployments_pb2_grpc,
    jobs_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    runtimes_pb2_grpc,
    variants_pb2_grpc,
)
from pareto_cli.connection import Connection, current_connection
from pareto_cli.hf_folder import is_hf_archive, pack_directory
from pareto_core import formats

CHUNK_BYTES = 1024 * 1024

_SUFFIX_FORMATS = {
    ".onnx": common_pb2.MODEL_FORMAT_ONNX,
    ".zip": common_pb2.MODEL_FORMAT_ONNX_BUNDLE,
    ".tar": common_pb2.MODEL_FORMAT_ONNX_BUNDLE,
    ".tgz": common_pb2.MODEL_FORMAT_ONNX_BUNDLE,
    ".gz": common_pb2.MODEL_FORMAT_ONNX_BUNDLE,
    ".pt2": common_pb2.MODEL_FORMAT_TORCH_EXPORT,
}
# Stored format name -> pareto.v1.ModelFormat value.
FORMAT_NAMES = {
    formats.from_proto_enum_name(name): value
    for name, value in common_pb2.ModelFormat.items()
    if formats.from_proto_enum_name(name)
}


def guess_format(path: Path) -> int:
    """The ModelFormat enum value for a file name; ValueError when the suffix is unknown."""
    try:
        fmt = _SUFFIX_FORMATS[path.suffix.lower()]
    except KeyError:
        known = ", ".join(sorted(_SUFFIX_FORMATS))
        raise ValueError(
            f"cannot tell the format of {path.name} (known suffixes: {known}); pass --format"
        ) from None
    if fmt == common_pb2.MODEL_FORMAT_ONNX_BUNDLE and is_hf_archive(path):
        return common_pb2.MODEL_FORMAT_HF_FOLDER
    return fmt


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


class ParetoClient:
    def __init__(
        self,
        address: str,
        max_message_bytes: int = 64 * 1024 * 1024,
        connection: Connection | None = None,
    ) -> None:
        """`connection`: token and TLS options; default: the `pareto` command's options,
        else PARETO_TOKEN / PARETO_TLS* from the environment."""
        self.address = address
        self._channel = (connection or current_connection()).channel(
            address,
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
            ],
        )
        self.models = models_pb2_grpc.ModelServiceStub(self._channel)
        self.datasets = datasets_pb2_grpc.DatasetServiceStub(self._channel)
        self.jobs = jobs_pb2_grpc.JobServiceStub(self._channel)
        self.variants = variants_pb2_grpc.VariantServiceStub(self._channel)
        self.deployments = deployments_pb2_grpc.DeploymentServiceStub(self._channel)
        self.runtimes = runtimes_pb2_grpc.RuntimeServiceStub(self._channel)

    def upload(
        self,
        path: Path,
        name: str,
        fmt: int | str | None = None,
        description: str = "",
        labels: dict[str, str] | None = None,
        new_version: bool = False,
        progress: Callable[[int], None] | None = None,
        task: str = "",
    ) -> models_pb2.Model:
        """Stream a model file in chunks; `progress(n)` is called with each chunk's size. A
        directory is a Hugging Face folder (packed into a tar first); `task` is its export
        task ("" = from the folder)."""
        path = Path(path)
        if path.is_dir():
            packed = pack_directory(path)
            try:
                fmt = common_pb2.MODEL_FORMAT_HF_FOLDER
                return self.upload(
                    packed, name, fmt, description, labels, new_version, progress, task
                )
            finally:
                packed.unlink(missing_ok=True)
        if isinstance(fmt, str):
            fmt = FORMAT_NAMES[fmt]
        header = models_pb2.UploadHeader(
            name=name,
            task=task,
            format=fmt or guess_format(path),
            size_bytes=path.stat().st_size,
            sha256=sha256_of(path),
            description=description,
            labels=labels or {},
            new_version=new_version,
        )
        messages = stream_file(
            path,
            models_pb2.UploadModelRequest(header=header),
            lambda chunk: models_pb2.UploadModelRequest(chunk=chunk),
            progress,
        )
        response = self.models.UploadModel(messages)
        return response.model

    def list_models(self, label_selector: dict[str, str] | None = None) -> list[models_pb2.Model]:
        request = models_pb2.ListModelsRequest(label_selector=label_selector or {})
        return list(self.models.ListModels(request).models)

    def get_model(self, name: str, version: int = 0) -> models_pb2.Model:
        return self.models.GetModel(models_pb2.GetModelRequest(name=name, version=version))

    def delete_model(self, name: str, version: int = 0) -> list[models_pb2.Model]:
        request = models_pb2.DeleteModelRequest(name=name, version=version)
        return list(self.models.DeleteModel(request).deleted)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ParetoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stream_file(
    path: Path,
    first: Message,
    chunk_message: Callable[[bytes], Message],
    progress: Callable[[int], None] | None,
) -> Iterator[Message]:
    """A client-streaming upload: `first` (the header), then the file in CHUNK_BYTES chunks;
    `progress(n)` is called with each chunk's size."""
    yield first
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            yield chunk_message(chunk)
            if progress:
                progress(len(chunk))
