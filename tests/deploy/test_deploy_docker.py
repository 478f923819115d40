"""The Dockerfile and .dockerignore: hadolint (the real linter, pinned by `make install`)
and the rules the image must keep.

No Docker daemon (and no network to base-image registries) exists on the machines that run
these tests, so the images are never built here: these tests lint and read the Dockerfile.
What the CPU build installs is replayed in a fresh venv by test_deploy_image_install.py.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tests.helpers.deploy_tools import ROOT, run, tool
from tests.helpers.dockerfile import instructions, stages

DOCKERFILE = ROOT / "Dockerfile"


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text()


def test_hadolint_finds_nothing(dockerfile):
    result = run(tool("hadolint"), "--failure-threshold", "style", str(DOCKERFILE), check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_really_linting(tmp_path: Path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nUSER root\n")
    result = run(tool("hadolint"), "--no-color", str(bad), check=False)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3014", "DL3002"):  # latest, unpinned, no -y, root
        assert rule in result.stdout


def test_cpu_image_is_the_default_and_both_final_stages_are_hardened(dockerfile):
    all_stages = stages(dockerfile)
    assert list(all_stages)[-1] == "cpu", "the last stage is what `docker build .` produces"
    assert "${PYTHON_IMAGE}" in all_stages["cpu"][0][1]
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in dockerfile
    assert re.search(r"ARG CUDA_IMAGE=nvidia/cuda:\S+-cudnn-runtime-ubuntu22\.04", dockerfile)
    for name in ("cpu", "gpu"):
        body = dict(all_stages[name])  # last of each instruction
        assert re.fullmatch(r"\$\{UID\}:\$\{UID\}", body["USER"]), "non-root, numeric"
        assert "ARG UID=10001" in dockerfile
        assert set(body["EXPOSE"].split()) == {"8000", "8001", "8002"}
        assert body["VOLUME"] == '["/data"]'
        assert "PARETO_DATA_DIR=/data" in " ".join(a for k, a in all_stages[name] if k == "ENV")
        assert '"pareto_cli.healthcheck"' in body["HEALTHCHECK"]
        assert body["ENTRYPOINT"] == '["pareto"]' and body["CMD"] == '["serve"]'
        copies = [a for k, a in all_stages[name] if k == "COPY"]
        assert copies and all(a.startswith("--from=") for a in copies), (
            f"{name}: only the built venv may reach the final image, got {copies}"
        )


def test_torch_is_pinned_like_make_install(dockerfile):
    makefile = (ROOT / "Makefile").read_text()
    pin = re.search(r"^TORCH_PIN := torch==(\S+)$", makefile, re.M).group(1)
    assert f"ARG TORCH_VERSION={pin}" in dockerfile
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in dockerfile
    # torch alone from the CPU index, then everything under a constraint naming that build
    installs = [a for k, a in instructions(dockerfile) if k == "RUN" and "pip install" in a]
    torch_steps = [a for a in installs if '"torch==${TORCH_VERSION}+cpu"' in a]
    assert len(torch_steps) == 2 and all("--index-url" in a for a in torch_steps)
    project_steps = [a for a in installs if re.search(r"pip install .*\s\.(\s|$)", a)]
    assert len(project_steps) == 2
    assert all("--constraint /opt/torch-constraint.txt" in a for a in project_steps)
    onnx2torch = re.search(r"onnx2torch==(\S+)", makefile).group(1)
    assert dockerfile.count(f"--no-deps onnx2torch=={onnx2torch}") == 2


def test_image_gets_exactly_the_packages_pyproject_installs(dockerfile):
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in include}
    copied = set(re.findall(r"^COPY (\w+)/ \1/$", dockerfile, re.M))
    assert copied == packages
    for stage in ("builder", "gpu-builder"):
        body = [a for k, a in stages(dockerfile)[stage] if k == "COPY"]
        assert {a.split("/")[0] for a in body if re.fullmatch(r"(\w+)/ \1/", a)} == packages


def test_dockerignore_sends_only_what_the_build_copies(dockerfile):
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "ignore everything, then re-include"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    sources = set()
    for keyword, args in instructions(dockerfile):
        if keyword == "COPY" and not args.startswith("--from="):
            sources.update(p.rstrip("/") for p in args.split()[:-1])
    assert sources == allowed
    assert "**/__pycache__" in lines
