# Pareto: make install && make demo; make test.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_PIN := torch==2.13.0
PROTO_OUT := .

.PHONY: install demo test lint proto bench clean

$(PY):
	python3.11 -m venv $(VENV) || python3 -m venv $(VENV)

install: $(PY)
	$(PIP) install --quiet --upgrade pip
	# torch first and pinned: it comes from the local CPU wheel, never a CUDA build.
	$(PIP) install --quiet $(TORCH_PIN)
	$(PIP) install --quiet -e '.[models,dev]' $(TORCH_PIN)
	# onnx2torch without its torchvision requirement (see pyproject.toml).
	$(PIP) install --quiet --no-deps onnx2torch==1.5.15

demo:
	$(PY) -m examples.demo

test:
	$(PY) -m pytest -q -ra

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

proto:
	$(PY) -m grpc_tools.protoc -Iproto --python_out=$(PROTO_OUT) --pyi_out=$(PROTO_OUT) \
		--grpc_python_out=$(PROTO_OUT) $$(find proto -name '*.proto' | sort)

bench:
	$(PY) -m bench.serving
	$(PY) -m bench.compression

clean:
	rm -rf .pareto .demo .pytest_cache
