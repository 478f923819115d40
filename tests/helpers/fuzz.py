"""What the fuzz tests share: limits, hypothesis settings, the tally of cases, `Fuzzed`.

(A module of its own rather than conftest.py, which pytest imports under another name,
so that every test adds to the one TALLY the end-of-run summary prints.)

Every call gets a deadline; an answer must be a deliberate status code, never UNKNOWN,
INTERNAL, a blown deadline (a hang) or UNAVAILABLE (a dead server). The number of cases
and their status codes are printed at the end of the run ("fuzz cases") and written as
JSON to $PARETO_FUZZ_REPORT when set.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from hypothesis import HealthCheck, settings
from tritonclient.grpc import service_pb2 as kserve_pb
from tritonclient.grpc import service_pb2_grpc as kserve_grpc

from pareto_cli.client import ParetoClient
from service.server import GatewayServer
from tests.helpers.tiny_model import WEIGHT

DEADLINE_S = 20.0
MODEL = "tiny"
DATASET = "tiny-data"
MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # the smallest PARETO_GRPC_MAX_MESSAGE_BYTES allowed
MAX_MODEL_BYTES = 1024 * 1024
EXPECTED = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)

# Reproducible in CI: derandomized, no example database, no per-example time limit (the
# server, not hypothesis, is under test; deadlines are on the gRPC calls). For a longer,
# random hunt: PARETO_FUZZ_SCALE=20 PARETO_FUZZ_RANDOM=1 pytest tests/fuzz
SCALE = float(os.environ.get("PARETO_FUZZ_SCALE", "1"))
RANDOM = os.environ.get("PARETO_FUZZ_RANDOM", "") == "1"


def fuzz(examples: int) -> settings:
    """Hypothesis settings for a fuzz test of `examples` cases (times PARETO_FUZZ_SCALE)."""
    return settings(
        max_examples=max(1, round(examples * SCALE)),
        derandomize=not RANDOM,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


TALLY: dict[str, Counter[str]] = defaultdict(Counter)


@dataclass
class Fuzzed:
    gateway: GatewayServer
    address: str
    client: ParetoClient
    kserve: kserve_grpc.GRPCInferenceServiceStub
    last_details: str = ""

    def call(self, what: str, rpc: Callable[[], Any]) -> grpc.StatusCode:
        """Run one fuzz case; check and tally its status code."""
        try:
            rpc()
            code, details = grpc.StatusCode.OK, ""
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
        TALLY[what][code.name] += 1
        self.last_details = details
        assert code in EXPECTED, f"{what}: {code.name}: {details[:500]}"
        assert code == grpc.StatusCode.OK or details, f"{what}: {code.name} without a message"
        return code

    def infer_ok(self) -> None:
        """A valid inference still gets the right answer."""
        x = np.ones((1, 4), np.float32)
        n = np.arange(4, dtype=np.int64).reshape(1, 4)
        # Version 1: fuzzed uploads may legitimately add versions of MODEL (new_version).
        request = kserve_pb.ModelInferRequest(model_name=MODEL, model_version="1")
        request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
        request.inputs.add(name="n", datatype="INT64", shape=[1, 4])
        request.raw_input_contents.extend([x.tobytes(), n.tobytes()])
        response = self.kserve.ModelInfer(request, timeout=DEADLINE_S)
        y = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(1, 2)
        assert np.allclose(y, x @ WEIGHT)
        assert np.array_equal(np.frombuffer(response.raw_output_contents[1], np.int64), 2 * n[0])


def staging_files(gateway: GatewayServer) -> list[Path]:
    """Files left in the blob store's staging area (an aborted upload leaves none)."""
    return [p for p in (gateway.settings.data_dir / "tmp").rglob("*") if p.is_file()]
