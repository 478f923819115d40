"""Closed-loop load from one process: THREADS clients each send the same request again and
again for SECONDS (after a warm-up), and one JSON line is printed: requests completed,
errors, and latency percentiles in ms.

    python -m bench.peer_servers.load --protocol grpc|http|direct --target ADDRESS|ONNX_FILE
        --model NAME --inputs FILE.npz --threads N --seconds S

`direct` runs ONNX Runtime in this process (1 intra-op thread per session, one session
shared by the threads, as a server would). Every side of bench/peers.py is measured
with this one harness; REST uses JSON tensors (what every peer supports).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Call = Callable[[], Any]


def grpc_call(address: str, model: str, inputs: dict[str, np.ndarray]) -> Call:
    import tritonclient.grpc as tc
    from tritonclient.utils import np_to_triton_dtype

    client = tc.InferenceServerClient(address)
    tensors = []
    for name, array in inputs.items():
        tensor = tc.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return lambda: client.infer(model, tensors)


def http_call(address: str, model: str, inputs: dict[str, np.ndarray]) -> Call:
    import tritonclient.http as th
    from tritonclient.utils import np_to_triton_dtype

    client = th.InferenceServerClient(address, connection_timeout=60, network_timeout=60)
    tensors = []
    for name, array in inputs.items():
        tensor = th.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array, binary_data=False)
        tensors.append(tensor)
    # tritonclient sends no Content-Type; KServe's REST server reads a body without
    # `application/json` as the binary extension and refuses it.
    headers = {"Content-Type": "application/json"}
    return lambda: client.infer(model, tensors, headers=headers)


def direct_call(session: Any, inputs: dict[str, np.ndarray]) -> Call:
    return lambda: session.run(None, inputs)


def _session(path: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def run(make_call: Callable[[], Call], threads: int, seconds: float, warmup: float) -> dict:
    start = time.perf_counter() + warmup
    end = start + seconds
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    ready = threading.Barrier(threads)

    def worker(k: int) -> None:
        call = make_call()
        ready.wait()
        while (now := time.perf_counter()) < end:
            try:
                call()
            except Exception:
                errors[k] += 1
                continue
            if now >= start:
                latencies[k].append(time.perf_counter() - now)

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    flat = np.array([x for part in latencies for x in part]) * 1e3
    return {
        "count": int(flat.size),
        "errors": int(sum(errors)),
        "seconds": seconds,
        "p50_ms": float(np.percentile(flat, 50)) if flat.size else None,
        "p99_ms": float(np.percentile(flat, 99)) if flat.size else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", choices=["grpc", "http", "direct"], required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--model", default="")
    parser.add_argument("--inputs", type=Path, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    with np.load(args.inputs) as data:
        inputs = {name: data[name] for name in data.files}
    if args.protocol == "direct":
        session = _session(args.target)
        make_call: Callable[[], Call] = lambda: direct_call(session, inputs)  # noqa: E731
    elif args.protocol == "grpc":
        make_call = lambda: grpc_call(args.target, args.model, inputs)  # noqa: E731
    else:
        make_call = lambda: http_call(args.target, args.model, inputs)  # noqa: E731
    print(json.dumps(run(make_call, args.threads, args.seconds, args.warmup)), flush=True)


if __name__ == "__main__":
    main()
