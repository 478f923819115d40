"""Settings of a real gateway on ephemeral loopback ports."""

from __future__ import annotations

from pathlib import Path

from service.settings import Settings

# Same ONNX Runtime options on both sides of every comparison with a direct session.
ORT_OPTIONS = {"intra_op_threads": 1, "inter_op_threads": 1, "graph_optimization_level": "all"}


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 0,
        "metrics_port": 0,
        "http_port": 0,
        "data_dir": data_dir,
        "ort_intra_op_threads": ORT_OPTIONS["intra_op_threads"],
        "ort_inter_op_threads": ORT_OPTIONS["inter_op_threads"],
        "grpc_workers": 8,
    }
    return Settings(**(values | overrides))
