# Pareto: make install && make demo; make test.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_PIN := torch==2.13.0
PROTO_OUT := .

.PHONY: install litert-venv demo test test-fast lint proto bench clean

$(PY):
	python3.11 -m venv $(VENV) || python3 -m venv $(VENV)

install: $(PY)
	$(PIP) install --quiet --upgrade pip
	# torch first and pinned: it comes from the local CPU wheel, never a CUDA build.
	$(PIP) install --quiet $(TORCH_PIN)
	$(PIP) install --quiet -e '.[models,dev]' $(TORCH_PIN)
	# onnx2torch without its torchvision requirement (see pyproject.toml).
	$(PIP) install --quiet --no-deps onnx2torch==1.5.15
	# promtool for the deploy/prometheus rule tests (Debian's prometheus package, binary only).
	bash tools/install_promtool.sh $(VENV)/bin
	# PostgreSQL server binaries for the tests of the cluster metadata backend (Debian's package).
	bash tools/install_postgres.sh
	# The LiteRT converter for edgetpu_tflite, in its own venv (litert-torch needs another
	# pydantic); runtimes/edgetpu_tflite.py calls tools/litert_convert.py with it.
	$(MAKE) litert-venv

LITERT_VENV ?= $(VENV)/litert
LITERT_PY := $(LITERT_VENV)/bin/python

litert-venv:
	test -x $(LITERT_PY) || python3.11 -m venv $(LITERT_VENV) || python3 -m venv $(LITERT_VENV)
	$(LITERT_PY) -m pip install --quiet --upgrade pip
	$(LITERT_PY) -m pip install --quiet $(TORCH_PIN)
	$(LITERT_PY) -m pip install --quiet -c tools/litert-constraints.txt litert-torch==0.10.0 $(TORCH_PIN)
	$(LITERT_PY) -m pip install --quiet --no-deps -c tools/litert-constraints.txt onnx2torch onnx

demo:
	$(PY) -m examples.demo

test:
	$(PY) -m pytest -q -ra

# The unit tests only (no server processes, no PostgreSQL): about a minute.
test-fast:
	$(PY) -m pytest -q -ra tests/unit

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

proto:
	$(PY) -m grpc_tools.protoc -Iproto --python_out=$(PROTO_OUT) --pyi_out=$(PROTO_OUT) \
		--grpc_python_out=$(PROTO_OUT) $$(find proto -name '*.proto' | sort)

bench:
	$(PY) -m bench.serving
	$(PY) -m bench.http_stacks
	$(PY) -m bench.peers
	$(PY) -m bench.routing
	$(PY) -m bench.compression
	$(PY) -m bench.transformers
	$(PY) -m bench.distillation
	$(PY) -m bench.runtimes
	$(PY) -m bench.search
	$(PY) -m bench.scale --ray
	$(PY) -m bench.load
	$(PY) -m bench.report  # docs/benchmarks.md from bench/results/*.json

clean:
	rm -rf .pareto .demo .pytest_cache
