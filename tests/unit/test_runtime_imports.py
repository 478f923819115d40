"""Importing the server, the CLI and every runtime module pulls in no backend library:
TensorRT, LiteRT and torch load only when a runtime is used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_runtime_modules_import_no_backend_library():
    code = (
        "import sys, service, service.server, pareto_cli.main\n"
        "import runtimes.tensorrt_gpu, runtimes.edgetpu_tflite, runtimes.triton_remote\n"
        "import runtimes.torch_cuda\n"
        "from runtimes.registry import list_runtimes\n"
        "[r.available() is None or r.available() for r in list_runtimes()]\n"
        "heavy = ('torch', 'tensorrt', 'ai_edge_litert', 'tflite_runtime', 'litert_torch')\n"
        "loaded = [m for m in heavy if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
