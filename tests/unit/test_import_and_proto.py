"""Start-up hygiene: `service` never imports torch, nor Ray (even with PARETO_RAY_ADDRESS
set: Ray lives in the job drivers); generated protobuf code is fresh."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_server_does_not_import_torch():
    code = (
        "import sys, service, service.server, pareto_cli.main\n"
        "heavy = [m for m in ('torch', 'transformers', 'sklearn') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_the_gateway_never_imports_ray(tmp_path):
    code = (
        "import socket, sys\n"
        "import service, service.server, pareto_cli.main\n"
        "from pareto_core.errors import Unavailable\n"
        "from service.jobs.scheduler import JobScheduler\n"
        "from service.settings import Settings\n"
        "assert 'ray' not in sys.modules, 'imported without PARETO_RAY_ADDRESS'\n"
        "with socket.socket() as s:\n"
        "    s.bind(('127.0.0.1', 0))\n"
        "    address = f'127.0.0.1:{s.getsockname()[1]}'\n"
        f"settings = Settings(data_dir={str(tmp_path)!r}, ray_address=address,\n"
        "                    database_url='postgresql://u@127.0.0.1:1/db')\n"
        "scheduler = JobScheduler(None, settings)\n"
        "try:\n"
        "    scheduler.check_can_start()\n"
        "except Unavailable as exc:\n"
        "    assert address in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('nothing listens there')\n"
        "assert 'ray' not in sys.modules, 'the gateway imported Ray'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_generated_proto_code_is_fresh(tmp_path):
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT / 'proto'}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            *protos,
        ],
        check=True,
    )
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*"))
    assert generated, "protoc produced nothing"
    stale = [str(p) for p in generated if (tmp_path / p).read_bytes() != (ROOT / p).read_bytes()]
    assert not stale, f"run `make proto`: stale generated files {stale}"
