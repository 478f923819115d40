"""The CPU image's install, replayed without Docker (no daemon exists on these machines).

The Dockerfile's builder stage is followed step by step in a fresh Python 3.11 venv: torch
pinned to the CPU build first, then exactly the files the stage COPYs installed
non-editable under the torch constraint, then onnx2torch --no-deps, then the stage's own
import check. Only one step differs: torch comes from the machine's local CPU wheel (what
`make install` uses) instead of PyTorch's CPU index, which these machines cannot reach.
Then the venv's `pareto serve` runs from an unrelated directory (so only site-packages can
serve it, as in the final image, which holds nothing else) and the image's HEALTHCHECK
command must report SERVING, then NOT_SERVING/unreachable after SIGTERM, with exit 0.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.deploy_tools import ROOT
from tests.helpers.dockerfile import instructions, stages

pytestmark = pytest.mark.slow


def sh(*args: str, cwd: Path, env: dict[str, str], timeout: float = 400) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result.stdout


def test_builder_stage_install_serves_from_site_packages(tmp_path: Path):
    python = shutil.which("python3.11")
    if python is None:
        pytest.skip("no python3.11 on PATH to build a fresh venv with")
    dockerfile = (ROOT / "Dockerfile").read_text()
    builder = stages(dockerfile)["builder"]
    torch_version = re.search(r"^ARG TORCH_VERSION=(\S+)$", dockerfile, re.M).group(1)
    sources = [path for keyword, args in builder if keyword == "COPY" for path in args.split()[:-1]]
    run_steps = " ".join(args for keyword, args in builder if keyword == "RUN")
    onnx2torch = re.search(r"--no-deps (onnx2torch==\S+)", run_steps).group(1)
    import_check = re.search(r'python -c "([^"]+)"', run_steps).group(1)

    src = tmp_path / "src"
    src.mkdir()
    for path in sources:
        origin = ROOT / path.rstrip("/")
        if origin.is_dir():
            shutil.copytree(origin, src / origin.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, src / origin.name)
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    sh(python, "-m", "venv", str(venv), cwd=tmp_path, env=env)
    constraint = tmp_path / "torch-constraint.txt"
    constraint.write_text(f"torch=={torch_version}+cpu\n")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    sh(*pip, f"torch=={torch_version}+cpu", cwd=src, env=env)
    sh(*pip, "--constraint", str(constraint), ".", cwd=src, env=env)
    sh(*pip, "--no-deps", onnx2torch, cwd=src, env=env)
    shutil.rmtree(src)  # the final image has no sources either
    sh(str(venv / "bin" / "python"), "-c", import_check, cwd=tmp_path, env=env)

    serve_env = {
        **env,
        "PARETO_HOST": "127.0.0.1",
        "PARETO_PORT": "0",
        "PARETO_METRICS_PORT": "0",
        "PARETO_HTTP_PORT": "0",
        "PARETO_DATA_DIR": str(tmp_path / "data"),
    }
    server = subprocess.Popen(
        [str(venv / "bin" / "pareto"), "serve"],
        cwd=tmp_path,
        env=serve_env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = None
        deadline = time.monotonic() + 120
        while port is None and time.monotonic() < deadline:
            line = server.stderr.readline()
            assert line or server.poll() is None, "pareto serve exited early"
            match = re.search(r"pareto listening on \S+:(\d+)", line)
            port = match and match.group(1)
        assert port, "pareto serve never said where it listens"
        healthcheck = [
            arg
            for keyword, args in instructions(dockerfile)
            if keyword == "HEALTHCHECK"
            for arg in re.findall(r'"([^"]+)"', args)
        ][:3]
        assert healthcheck == ["python", "-m", "pareto_cli.healthcheck"]
        probe_env = {**env, "PARETO_PORT": port}
        out = sh(*healthcheck, cwd=tmp_path, env=probe_env, timeout=30)
        assert "SERVING" in out
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        probe = subprocess.run(
            [*healthcheck, "--timeout", "2"], cwd=tmp_path, env=probe_env, capture_output=True
        )
        assert probe.returncode == 1
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
