"""Clients of a gateway's KServe v2 REST port: tritonclient.http and curl, unmodified."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Any

import numpy as np
import tritonclient.http as th


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def curl(url: str, *args: str, data: bytes | None = None) -> Answer:
    """`curl` with `args` (headers, -X, TLS options); `data` is POSTed from stdin."""
    command = ["curl", "-sS", "-D", "-", "--max-time", "60", *args, url]
    if data is not None:
        command[1:1] = ["--data-binary", "@-"]
    done = subprocess.run(command, input=data, capture_output=True, check=False, timeout=90)
    assert done.returncode == 0, done.stderr.decode()
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 100"):  # curl shows a 100 Continue first
        head, _, body = body.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(lines[0].split()[1]), body, headers)


def http_client(port: int, **options: Any) -> th.InferenceServerClient:
    return th.InferenceServerClient(f"127.0.0.1:{port}", **options)


def http_infer(
    client: th.InferenceServerClient,
    model: str,
    inputs: dict[str, np.ndarray],
    binary: bool,
    **options: Any,
) -> th.InferResult:
    """One inference with every input (and output) as JSON, or as binary data."""
    tensors = []
    for name, value in inputs.items():
        datatype = "FP32" if value.dtype == np.float32 else "INT64"
        tensor = th.InferInput(name, list(value.shape), datatype)
        tensor.set_data_from_numpy(value, binary_data=binary)
        tensors.append(tensor)
    if not binary and "outputs" not in options:
        outputs = client.get_model_metadata(model, headers=options.get("headers"))["outputs"]
        options["outputs"] = [
            th.InferRequestedOutput(o["name"], binary_data=False) for o in outputs
        ]
    return client.infer(model, tensors, **options)


def curl_exit_code(url: str, *args: str) -> int:
    """curl's exit status for a GET that is expected to fail (TLS handshakes refused)."""
    command = ["curl", "-sS", "-o", "/dev/null", "--max-time", "30", *args, url]
    return subprocess.run(command, capture_output=True, check=False, timeout=60).returncode
