"""Can this model be served? Checked once, at upload, in a bounded helper process.

``python -m runtimes.model_check --runtime NAME --model PATH --max-elements N [--onnx]``:

1. every tensor whose size the ONNX graph fixes (inputs, outputs, and what shape inference
   derives, ConstantOfShape of a constant shape included) has at most N elements and no
   negative dimension;
2. the runtime loads the model (an op domain it does not know fails here, not at the first
   request) and runs it once on all-zero inputs, dynamic dims set to 1.

It prints one JSON line: ``{"ok": true}``, or ``{"error": "...", "kind": "too_large" |
"invalid"}``. The parent runs it through `runtimes.helper_process` (memory limit, lower
priority, a wall-time limit), so a model that needs more memory than that fails here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from pareto_core.errors import InvalidArgument, ParetoError, ResourceExhausted
from runtimes import helper_process
from runtimes.memory_probe import child_env, zero_inputs

TIMEOUT_S = 300
TOO_LARGE, INVALID = "too_large", "invalid"


class CheckFailed(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind  # TOO_LARGE or INVALID
        self.reason = reason


def check_model(runtime: str, model_path: Path, max_elements: int, onnx: bool) -> None:
    """Run the check in a helper process (`onnx`: the file is an ONNX model, whose declared
    sizes are checked too): InvalidArgument or ResourceExhausted saying why the model
    cannot be served."""
    args = ["--runtime", runtime, "--model", str(Path(model_path).resolve())]
    args += ["--max-elements", str(max_elements), *(["--onnx"] if onnx else [])]
    try:
        proc = helper_process.run_module(
            "runtimes.model_check", args, timeout_s=TIMEOUT_S, env=child_env()
        )
    except subprocess.TimeoutExpired:
        raise InvalidArgument(f"loading the model took over {TIMEOUT_S} s") from None
    lines = [line for line in proc.stdout.decode("utf-8", "replace").splitlines() if line]
    try:
        answer: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        limit = helper_process.memory_limit()
        raise ResourceExhausted(
            f"{runtime} could not load the model and run it once within {limit} bytes "
            f"(PARETO_HELPER_MEMORY_BYTES); exit status {proc.returncode}"
        ) from None
    if answer.get("ok"):
        return
    error = ResourceExhausted if answer.get("kind") == TOO_LARGE else InvalidArgument
    raise error(str(answer.get("error", "the model check failed")))


# -- in the helper process ---------------------------------------------------------------


def declared_sizes(model: Any, max_elements: int) -> None:
    """CheckFailed for a tensor the graph fixes at over `max_elements` elements, or with a
    negative dimension (see the module docstring)."""
    import onnx

    with contextlib.suppress(Exception):  # best effort: else check what is declared
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    graph = model.graph
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.type.WhichOneof("value") != "tensor_type":
            continue
        shape = value.type.tensor_type.shape
        dims: list[int] = [int(d.dim_value) for d in shape.dim if d.HasField("dim_value")]
        if any(d < 0 for d in dims):
            raise CheckFailed(INVALID, f"tensor {value.name!r} has a negative dimension {dims}")
        elements = math.prod(dims)
        if dims and len(dims) == len(shape.dim) and elements > max_elements:
            raise CheckFailed(
                TOO_LARGE,
                f"tensor {value.name!r} is declared {dims}: {elements} elements, over the "
                f"limit of {max_elements} (PARETO_MAX_TENSOR_ELEMENTS)",
            )


def check_here(runtime_name: str, model_path: Path, max_elements: int, onnx_file: bool) -> None:
    """Steps 1 and 2 of the module docstring, in this process."""
    from runtimes.registry import get_runtime

    if onnx_file:
        import onnx

        declared_sizes(onnx.load(str(model_path), load_external_data=False), max_elements)
    runtime = get_runtime(runtime_name)
    try:
        session = runtime.load(model_path)
        session.run(zero_inputs(session.signature))
    except MemoryError:
        reason = "running it once on the smallest inputs needs more memory than allowed"
        raise CheckFailed(TOO_LARGE, reason) from None
    except ParetoError as exc:
        raise CheckFailed(INVALID, f"{runtime_name} cannot run it: {exc}") from None
    except Exception as exc:  # a runtime library's own error
        raise CheckFailed(INVALID, f"{runtime_name} cannot run it: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtimes.model_check", description=__doc__)
    parser.add_argument("--runtime", required=True)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--max-elements", required=True, type=int)
    parser.add_argument("--onnx", action="store_true", help="check its declared sizes too")
    args = parser.parse_args(argv)
    try:
        check_here(args.runtime, args.model, args.max_elements, args.onnx)
    except CheckFailed as failed:
        print(json.dumps({"error": failed.reason, "kind": failed.kind}), flush=True)
        return 2
    print(json.dumps({"ok": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
