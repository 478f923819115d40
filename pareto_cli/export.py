"""`pareto export triton MODEL DIR`: a Triton model repository for a model or variant.

The gateway builds the repository (config.pbtxt from the model's signature, plus the ONNX
file and its external data) and streams it; it is written to a temporary directory in
DIR and renamed to DIR/<model> when complete, so a failed export leaves nothing behind.
An existing DIR/<model> is never overwritten.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import click

from pareto.v1 import runtimes_pb2
from pareto_cli.client import ParetoClient
from pareto_cli.options import server_option


def write_repository(chunks: Iterable[runtimes_pb2.ExportFileChunk], out_dir: Path) -> Path:
    """Write streamed files under `out_dir`; return the model directory made there."""
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    done = False
    try:
        model_name = _write_files(chunks, staging)
        target = out_dir / model_name
        if target.exists():
            raise click.ClickException(f"{target} already exists; remove it or pick another DIR")
        (staging / model_name).rename(target)
        done = True
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not done:
            shutil.rmtree(out_dir, ignore_errors=True)  # a failed export leaves nothing


def _write_files(chunks: Iterable[runtimes_pb2.ExportFileChunk], staging: Path) -> str:
    names: set[str] = set()
    handle = None
    for chunk in chunks:
        relative = PurePosixPath(chunk.path)
        if relative.is_absolute() or ".." in relative.parts or len(relative.parts) < 2:
            raise click.ClickException(f"the server sent a bad file path {chunk.path!r}")
        names.add(relative.parts[0])
        if handle is None:
            path = staging.joinpath(*relative.parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = path.open("wb")
        handle.write(chunk.data)
        if chunk.last:
            handle.close()
            handle = None
    if handle is not None:
        handle.close()
        raise click.ClickException("the export stream ended in the middle of a file")
    if len(names) != 1:
        raise click.ClickException(f"expected one model directory, got {sorted(names)}")
    return names.pop()


@click.group()
def export() -> None:
    """Export a model or variant for another server."""


@export.command("triton")
@click.argument("model")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--version", default="", help="Version number or variant id (default latest).")
@click.option("--max-batch-size", default=8, show_default=True, help="0 = no batching.")
@click.option("--preferred-batch-size", "preferred", multiple=True, type=int)
@click.option("--max-queue-delay-us", default=100, show_default=True)
@click.option("--instances", default=1, show_default=True, help="Instances per device.")
@click.option("--kind", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True)
@click.option("--tensorrt-precision", type=click.Choice(["FP16", "FP32"]), default="FP16")
@click.option("--no-tensorrt", is_flag=True, help="On GPU: plain ONNX Runtime CUDA.")
@server_option
def triton(model, out_dir, version, max_batch_size, preferred, max_queue_delay_us, instances,
           kind, tensorrt_precision, no_tensorrt, server) -> None:  # fmt: skip
    """Write a Triton model repository for MODEL (NAME or NAME.<variant id>) into OUT_DIR."""
    request = runtimes_pb2.ExportTritonRequest(
        name=model,
        version=version,
        max_batch_size=max_batch_size,
        preferred_batch_sizes=list(preferred),
        max_queue_delay_us=max_queue_delay_us,
        instance_count=instances,
        kind=kind,
        tensorrt_precision=tensorrt_precision,
        disable_tensorrt=no_tensorrt,
    )
    with ParetoClient(server) as client:
        target = write_repository(client.runtimes.ExportTriton(request), out_dir)
    click.echo(f"wrote Triton model repository entry {target}")
