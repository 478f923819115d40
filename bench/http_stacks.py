"""HTTP stacks for the KServe v2 REST port, measured side by side on one small infer endpoint.

`python -m bench.http_stacks [--rounds 5] [--seconds 1.5]`. Each candidate serves the same
`POST /v2/models/digits/infer` in a process of its own: the request is parsed as KServe v2
JSON (or JSON plus binary tensor data, the `Inference-Header-Content-Length` extension),
a digits-sized input (FP32 [1, 64]) goes through a fixed 64x10 layer and softmax, and the
answer goes back as JSON (or binary). The same synchronous function does that work for
every candidate; the async stacks run it in a bounded thread pool, as the gateway must
(inference is synchronous), and the threaded one in its request thread. So what differs is
the stack: parsing, routing, the hop to a worker thread, writing the response.

Candidates: Starlette on uvicorn with httptools, a bare ASGI app on the same uvicorn (what
Starlette itself costs), aiohttp's web server, and the standard library's
ThreadingHTTPServer (no dependency; a baseline, not a production server). One client
harness for all, in this process: asyncio with raw keep-alive sockets and pre-built
requests, closed loop at concurrency 1 and 8. This VM is noisy, so the candidates take
turns in short rounds (the order rotating every round) and the figures are medians over
rounds. Results: a table on stdout and bench/results/http_stacks.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from bench.common import REPO_ROOT, free_port, machine_info, package_versions

RESULTS = REPO_ROOT / "bench" / "results" / "http_stacks.json"
PATH = "/v2/models/digits/infer"
HEADER = "Inference-Header-Content-Length"
WEIGHT = (np.arange(640, dtype=np.float32).reshape(64, 10) % 7 - 3) / 10
POOL_THREADS = 4
STACKS = ("starlette_uvicorn", "uvicorn_asgi", "aiohttp", "stdlib_threading")
CONCURRENCY = (1, 8)
PACKAGES = ("starlette", "uvicorn", "httptools", "aiohttp")
# What service/rest/server.py runs, chosen on these figures: the fastest well-kept stack
# (the standard library's server is a baseline: a thread per connection, unbounded).
CHOSEN = "uvicorn_asgi"


# --------------------------------------------------------------------------- the endpoint


def infer(body: bytes, header_length: int | None) -> tuple[bytes, int | None]:
    """The same work for every stack: KServe v2 request in, response out (body, header
    length when the response carries binary data)."""
    header = json.loads(body[:header_length] if header_length is not None else body)
    tensor = header["inputs"][0]
    if "binary_data_size" in tensor.get("parameters", {}):
        x = np.frombuffer(body[header_length:], dtype="<f4")
    else:
        x = np.asarray(tensor["data"], dtype=np.float32)
    logits = x.reshape(-1, 64) @ WEIGHT
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    y = e / e.sum(axis=1, keepdims=True)
    out: dict[str, Any] = {"name": "probabilities", "datatype": "FP32", "shape": list(y.shape)}
    binary = header.get("parameters", {}).get("binary_data_output", False)
    raw = y.astype("<f4").tobytes()
    if binary:
        out["parameters"] = {"binary_data_size": len(raw)}
    else:
        out["data"] = y.ravel().tolist()
    text = json.dumps({"model_name": "digits", "model_version": "1", "outputs": [out]}).encode()
    return (text + raw, len(text)) if binary else (text, None)


def _header_length(value: str | None) -> int | None:
    return int(value) if value is not None else None


# --------------------------------------------------------------------------- the candidates


def serve_starlette(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    pool = ThreadPoolExecutor(POOL_THREADS)

    async def endpoint(request: Request) -> Response:
        body = await request.body()
        length = _header_length(request.headers.get(HEADER))
        loop = asyncio.get_running_loop()
        out, out_length = await loop.run_in_executor(pool, infer, body, length)
        headers = {HEADER: str(out_length)} if out_length is not None else None
        return Response(out, media_type="application/json", headers=headers)

    app = Starlette(routes=[Route(PATH, endpoint, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, http="httptools", log_level="warning",
                access_log=False, loop="asyncio", lifespan="off")  # fmt: skip


def serve_uvicorn_asgi(port: int) -> None:
    import uvicorn

    pool = ThreadPoolExecutor(POOL_THREADS)
    header_key = HEADER.lower().encode()

    async def app(scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        length = _header_length(
            next((v.decode() for k, v in scope["headers"] if k == header_key), None)
        )
        loop = asyncio.get_running_loop()
        out, out_length = await loop.run_in_executor(pool, infer, b"".join(chunks), length)
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(out)).encode())]  # fmt: skip
        if out_length is not None:
            headers.append((header_key, str(out_length).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": out})

    uvicorn.run(app, host="127.0.0.1", port=port, http="httptools", log_level="warning",
                access_log=False, loop="asyncio", lifespan="off")  # fmt: skip


def serve_aiohttp(port: int) -> None:
    from aiohttp import web

    pool = ThreadPoolExecutor(POOL_THREADS)

    async def endpoint(request: web.Request) -> web.Response:
        body = await request.read()
        length = _header_length(request.headers.get(HEADER))
        loop = asyncio.get_running_loop()
        out, out_length = await loop.run_in_executor(pool, infer, body, length)
        headers = {HEADER: str(out_length)} if out_length is not None else None
        return web.Response(body=out, content_type="application/json", headers=headers)

    app = web.Application()
    app.router.add_post(PATH, endpoint)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_stdlib(port: int) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive
        disable_nagle_algorithm = True  # headers and body go out in separate writes

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            out, out_length = infer(body, _header_length(self.headers.get(HEADER)))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            if out_length is not None:
                self.send_header(HEADER, str(out_length))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


SERVERS: dict[str, Callable[[int], None]] = {
    "starlette_uvicorn": serve_starlette,
    "uvicorn_asgi": serve_uvicorn_asgi,
    "aiohttp": serve_aiohttp,
    "stdlib_threading": serve_stdlib,
}


# --------------------------------------------------------------------------- the client


def requests() -> dict[str, bytes]:
    """The two request kinds, as complete HTTP/1.1 messages."""
    pixels = (np.arange(64, dtype=np.float32) % 17).reshape(1, 64)
    tensor = {"name": "pixels", "datatype": "FP32", "shape": [1, 64]}
    as_json = json.dumps({"inputs": [{**tensor, "data": pixels.ravel().tolist()}]}).encode()
    header = json.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": pixels.nbytes}}],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    binary = header + pixels.astype("<f4").tobytes()

    def message(body: bytes, extra: str) -> bytes:
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
        )
        return head.encode() + body

    return {
        "json": message(as_json, "Content-Type: application/json\r\n"),
        "binary": message(
            binary, f"Content-Type: application/octet-stream\r\n{HEADER}: {len(header)}\r\n"
        ),
    }


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> bytes:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length)
    if status != b"200":
        raise RuntimeError(f"status {status!r}: {body[:200]!r}")
    return body


async def _load(port: int, request: bytes, concurrency: int, seconds: float) -> list[float]:
    latencies: list[float] = []

    async def worker(deadline: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while (start := time.perf_counter()) < deadline:
                await _exchange(reader, writer, request)
                latencies.append(time.perf_counter() - start)
        finally:
            writer.close()

    deadline = time.perf_counter() + seconds
    await asyncio.gather(*(worker(deadline) for _ in range(concurrency)))
    return latencies


async def _check(port: int, kinds: dict[str, bytes]) -> None:
    """Every candidate must give the same right answer before it is timed."""
    expected = infer(*_body_and_length(kinds["json"]))[0]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert await _exchange(reader, writer, kinds["json"]) == expected
        binary = await _exchange(reader, writer, kinds["binary"])
        assert binary == infer(*_body_and_length(kinds["binary"]))[0]
    finally:
        writer.close()


def _body_and_length(message: bytes) -> tuple[bytes, int | None]:
    head, _, body = message.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == HEADER.lower().encode():
            return body, int(value)
    return body, None


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on {port} did not listen within {timeout} s")


# --------------------------------------------------------------------------- the run


def measure(rounds: int, seconds: float, stacks: list[str]) -> dict[str, Any]:
    kinds = requests()
    ports = {name: free_port() for name in stacks}
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", "bench.http_stacks", "--serve", name, "--port", str(port)],
            cwd=REPO_ROOT,
        )
        for name, port in ports.items()
    }
    samples: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    try:
        for name, port in ports.items():
            _wait_listening(port, processes[name])
            asyncio.run(_check(port, kinds))
            asyncio.run(_load(port, kinds["json"], 8, 0.5))  # warm-up
        for index in range(rounds):
            order = stacks[index % len(stacks) :] + stacks[: index % len(stacks)]
            for name in order:
                for kind, request in kinds.items():
                    for concurrency in CONCURRENCY:
                        lat = asyncio.run(_load(ports[name], request, concurrency, seconds))
                        samples.setdefault((name, kind, concurrency), []).append(
                            {
                                "rps": len(lat) / seconds,
                                "p50_ms": float(np.percentile(lat, 50) * 1e3),
                                "p99_ms": float(np.percentile(lat, 99) * 1e3),
                            }
                        )
            print(f"round {index + 1}/{rounds} done", flush=True)
    finally:
        for process in processes.values():
            process.terminate()
            process.wait(10)
    cells = [
        {
            "stack": name,
            "case": f"{kind} c{concurrency}",
            "throughput_rps": statistics.median(s["rps"] for s in runs),
            "p50_ms": statistics.median(s["p50_ms"] for s in runs),
            "p99_ms": statistics.median(s["p99_ms"] for s in runs),
            "rps_per_round": [round(s["rps"]) for s in runs],
        }
        for (name, kind, concurrency), runs in samples.items()
    ]
    return {"cells": sorted(cells, key=lambda c: (c["case"], -c["throughput_rps"]))}


def ratios(cells: list[dict[str, Any]], reference: str) -> list[dict[str, Any]]:
    """Each stack's median throughput over the reference's, per case."""
    by_case: dict[str, dict[str, float]] = {}
    for cell in cells:
        by_case.setdefault(cell["case"], {})[cell["stack"]] = cell["throughput_rps"]
    rows = []
    for case, stacks in sorted(by_case.items()):
        base = stacks.get(reference)
        if not base:
            continue
        rows.append({"case": case, **{f"{s}_x": round(v / base, 3) for s, v in stacks.items()}})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.5, help="per case, per round")
    parser.add_argument("--stacks", default=",".join(STACKS))
    parser.add_argument("--serve", choices=STACKS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        SERVERS[args.serve](args.port)
        return 0
    started = time.time()
    stacks = [s for s in args.stacks.split(",") if s]
    result = measure(args.rounds, args.seconds, stacks)
    result = {
        "bench": "http_stacks",
        "created_unix": int(started),
        "duration_s": round(time.time() - started, 1),
        "machine": machine_info(),
        "versions": package_versions(PACKAGES),
        "settings": {
            "rounds": args.rounds,
            "seconds_per_case": args.seconds,
            "pool_threads": POOL_THREADS,
            "input": "FP32 [1, 64]",
        },
        **result,
        "ratios": ratios(result["cells"], CHOSEN),
        "decision": {"chosen": CHOSEN, "serves": "service/rest/server.py"},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for cell in result["cells"]:
        print(
            f"{cell['case']:10} {cell['stack']:18} {cell['throughput_rps']:8.0f} req/s  "
            f"p50 {cell['p50_ms']:.2f} ms  p99 {cell['p99_ms']:.2f} ms"
        )
    print(f"wrote {RESULTS.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
