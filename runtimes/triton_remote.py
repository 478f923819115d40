"""A model served by an external Triton Inference Server (or any KServe v2 gRPC server,
Pareto included), reached through `tritonclient.grpc`.

Nothing is built locally: `load` connects, checks the remote model is ready (asking the
server to load it first, as Triton's explicit model control allows, unless `load_remote`
is false) and reads its metadata (its signature). Every call gets a deadline
(`timeout_s`); a call that fails with UNAVAILABLE (server restarting, connection refused)
is retried up to `retries` times with a growing pause, and no other failure is retried (a
bad input stays bad, and a call that may have run is never repeated after a timeout).
Calls share a pool of `pool_size` clients, each with its own gRPC channel, so concurrent
requests do not queue behind one connection.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pareto_core.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    ParetoError,
    Unavailable,
)
from pareto_core.formats import FORMAT_ONNX, FORMAT_ONNX_BUNDLE, FORMAT_TORCH_EXPORT
from pareto_core.tensors import Signature, TensorSpec
from runtimes.base import Capabilities, Runtime, RuntimeDescription, Session
from runtimes.options import OptionContext, Options
from runtimes.remote_identity import check_sha256, check_signature

RUNTIME_NAME = "triton_remote"
T = TypeVar("T")


class TritonOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = ""  # host:port of the remote server's gRPC endpoint
    model_name: str = ""  # the remote model; the gateway fills in the served name
    model_version: str = ""
    timeout_s: float = Field(10.0, gt=0, le=3600)
    retries: int = Field(2, ge=0, le=10)
    retry_backoff_s: float = Field(0.05, ge=0, le=10)
    pool_size: int = Field(4, ge=1, le=64)
    load_remote: bool = True  # ask the server to load the model when it is not ready
    # Filled by the gateway (runtimes/remote_identity.py): what the remote model must be.
    expect_sha256: str = ""
    expect_signature: dict[str, list[dict[str, Any]]] | None = None


_CODES: dict[str, type[ParetoError]] = {
    "StatusCode.INVALID_ARGUMENT": InvalidArgument,
    "StatusCode.NOT_FOUND": NotFound,
    "StatusCode.DEADLINE_EXCEEDED": DeadlineExceeded,
    "StatusCode.UNAVAILABLE": Unavailable,
    "StatusCode.FAILED_PRECONDITION": FailedPrecondition,
}


def _translate(exc: Exception, what: str) -> ParetoError:
    status = getattr(exc, "status", lambda: None)() or ""
    error = _CODES.get(status, Internal)
    message = exc.message() if hasattr(exc, "message") else str(exc)
    return error(f"{RUNTIME_NAME}: {what}: {message}")


def call_with_retries(
    call: Callable[[], T],
    retries: int,
    backoff_s: float,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`call()`, retried after UNAVAILABLE only; other errors are raised at once."""
    from tritonclient.utils import InferenceServerException

    for attempt in range(retries + 1):
        try:
            return call()
        except InferenceServerException as exc:
            error = _translate(exc, what)
            if not isinstance(error, Unavailable) or attempt == retries:
                raise error from None
        sleep(backoff_s * (2**attempt))
    raise AssertionError("unreachable")


class ClientPool:
    """`size` InferenceServerClients, each lent to one call at a time."""

    def __init__(self, url: str, size: int) -> None:
        import tritonclient.grpc as tc

        self._clients: queue.Queue[Any] = queue.Queue()
        for _ in range(size):
            self._clients.put(tc.InferenceServerClient(url))

    @contextmanager
    def client(self) -> Iterator[Any]:
        client = self._clients.get()
        try:
            yield client
        finally:
            self._clients.put(client)

    def close(self) -> None:
        while not self._clients.empty():
            self._clients.get_nowait().close()


class TritonSession(Session):
    def __init__(self, options: TritonOptions) -> None:
        self.options = options
        self._pool = ClientPool(options.url, options.pool_size)
        self._closed = False
        self.signature = self._remote_signature()

    def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        def attempt() -> T:
            with self._pool.client() as client:
                return fn(client)

        o = self.options
        return call_with_retries(attempt, o.retries, o.retry_backoff_s, what)

    def _remote_signature(self) -> Signature:
        o = self.options
        what = f"model {o.model_name!r} at {o.url}"
        ready = self._call(
            what,
            lambda c: c.is_model_ready(o.model_name, o.model_version, client_timeout=o.timeout_s),
        )
        if not ready and o.load_remote:  # Triton in explicit model-control mode
            self._call(what, lambda c: c.load_model(o.model_name, client_timeout=o.timeout_s))
            ready = self._call(
                what,
                lambda c: c.is_model_ready(
                    o.model_name, o.model_version, client_timeout=o.timeout_s
                ),
            )
        if not ready:
            raise FailedPrecondition(f"{RUNTIME_NAME}: {what} is not ready on the remote server")
        meta = self._call(
            what,
            lambda c: c.get_model_metadata(
                o.model_name, o.model_version, as_json=True, client_timeout=o.timeout_s
            ),
        )

        def specs(items: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
            return tuple(
                TensorSpec(t["name"], t["datatype"], tuple(int(d) for d in t.get("shape", [])))
                for t in items
            )

        remote = Signature(specs(meta.get("inputs", [])), specs(meta.get("outputs", [])))
        self._check_identity(remote, what)
        return remote

    def _check_identity(self, remote: Signature, what: str) -> None:
        from tritonclient.utils import InferenceServerException

        o = self.options
        if o.expect_signature is not None:
            inputs, outputs = (
                tuple(TensorSpec.from_json(t) for t in o.expect_signature[key])
                for key in ("inputs", "outputs")
            )
            check_signature(Signature(inputs, outputs), remote, f"{RUNTIME_NAME}: {what}")
        if not o.expect_sha256:
            return
        try:
            config = self._call(
                what,
                lambda c: c.get_model_config(
                    o.model_name, o.model_version, as_json=True, client_timeout=o.timeout_s
                ),
            )
        except (ParetoError, InferenceServerException):  # a server without ModelConfig
            return
        check_sha256(o.expect_sha256, config.get("config", {}), f"{RUNTIME_NAME}: {what}")

    def run(
        self, inputs: dict[str, np.ndarray], output_names: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        import tritonclient.grpc as tc

        if self._closed:
            raise FailedPrecondition(f"{RUNTIME_NAME} session is closed")
        o = self.options
        wanted = list(output_names) if output_names else [t.name for t in self.signature.outputs]
        infer_inputs = []
        for spec in self.signature.inputs:
            array = np.ascontiguousarray(inputs[spec.name])
            item = tc.InferInput(spec.name, list(array.shape), spec.datatype)
            item.set_data_from_numpy(array)
            infer_inputs.append(item)
        requested = [tc.InferRequestedOutput(name) for name in wanted]
        result = self._call(
            f"inference on {o.model_name!r} at {o.url}",
            lambda c: c.infer(
                o.model_name,
                infer_inputs,
                model_version=o.model_version,
                outputs=requested,
                client_timeout=o.timeout_s,
            ),
        )
        return {name: result.as_numpy(name) for name in wanted}

    def close(self) -> None:
        self._closed = True
        self._pool.close()


class TritonRemote(Runtime):
    name = RUNTIME_NAME
    formats = frozenset({FORMAT_ONNX, FORMAT_ONNX_BUNDLE, FORMAT_TORCH_EXPORT})
    auto_select = False  # needs the remote server's address: only when asked for
    options_model = TritonOptions
    server_options = {
        "expect_sha256": "the gateway checks the remote model is the stored one",
        "expect_signature": "the gateway checks the remote model is the stored one",
    }

    def complete_options(self, options: Options, context: OptionContext) -> Options:
        """The remote model defaults to the name this gateway serves it under; what it
        must be (the stored model's sha256 and signature) comes from the gateway."""
        completed = dict(options)
        if not completed.get("model_name") and context.served_name:
            completed["model_name"] = context.served_name
        if context.model_sha256:
            completed["expect_sha256"] = context.model_sha256
        if context.signature is not None:
            completed["expect_signature"] = {
                "inputs": [t.to_json() for t in context.signature.inputs],
                "outputs": [t.to_json() for t in context.signature.outputs],
            }
        return completed

    def capabilities(self) -> Capabilities:
        from pareto_core.tensors import KSERVE_TO_NUMPY

        return Capabilities(tuple(sorted(self.formats)), tuple(KSERVE_TO_NUMPY), ("remote",))

    def available(self) -> str | None:
        try:
            import tritonclient.grpc  # noqa: F401
        except ImportError as exc:
            return f"the tritonclient[grpc] package is not importable ({exc})"
        return None

    def load(self, model_path: Path, options: dict[str, Any] | None = None) -> TritonSession:
        opts = self.parse_options(options)
        if not opts.url or not opts.model_name:
            raise FailedPrecondition(
                f"{RUNTIME_NAME} needs the remote server and model: set runtime options url "
                "(host:port of its gRPC endpoint) and model_name"
            )
        return TritonSession(opts)

    def describe(self) -> RuntimeDescription:
        from importlib.metadata import version

        return RuntimeDescription(
            name=RUNTIME_NAME,
            version=f"tritonclient {version('tritonclient')}",
            device="remote",
            accelerated=False,
            details={"protocol": "KServe v2 gRPC", "retries": "on UNAVAILABLE only"},
        )
