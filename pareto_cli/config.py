"""`pareto config NAME [options]`: show or change how a model is served (dynamic batching,
warm-up). Without options it shows the current config; options change only what they
name (the rest keeps its current value)."""

from __future__ import annotations

import json

import click

from pareto.v1 import models_pb2
from pareto_cli.client import ParetoClient
from pareto_cli.options import json_option, server_option, to_dict


def _numbers(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        message = f"expected numbers like 4,8, got {text!r}"
        raise click.BadParameter(message, param_hint=option) from None


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


@click.command()
@click.argument("name")
@click.option("--batching/--no-batching", default=None, help="Dynamic batching on or off.")
@click.option("--max-batch-size", type=int, default=None, help="Rows one run takes at most.")
@click.option(
    "--max-queue-delay-us", type=int, default=None, help="How long a batch waits for more."
)
@click.option("--preferred", default=None, help="Preferred batch sizes, e.g. 8,16.")
@click.option("--max-queue-size", type=int, default=None, help="Requests waiting at most.")
@click.option("--pad", default=None, help="Inputs that may be padded, e.g. input_ids,mask.")
@click.option("--instances", type=int, default=None, help="Runs at once (0: one per host CPU).")
@click.option("--warmup-runs", type=int, default=None, help="Warm-up runs per batch size.")
@click.option("--warmup-batch-sizes", default=None, help="Warm-up batch sizes, e.g. 1,8.")
@json_option
@server_option
def config(
    name: str,
    batching: bool | None,
    max_batch_size: int | None,
    max_queue_delay_us: int | None,
    preferred: str | None,
    max_queue_size: int | None,
    pad: str | None,
    instances: int | None,
    warmup_runs: int | None,
    warmup_batch_sizes: str | None,
    as_json: bool,
    server: str,
) -> None:
    """Show or change how model NAME is served."""
    changes = {
        "enabled": batching,
        "max_batch_size": max_batch_size,
        "max_queue_delay_us": max_queue_delay_us,
        "preferred_batch_sizes": _numbers(preferred, "--preferred"),
        "max_queue_size": max_queue_size,
        "pad_inputs": _names(pad),
        "instances": instances,
    }
    warmup = {
        "runs": warmup_runs,
        "batch_sizes": _numbers(warmup_batch_sizes, "--warmup-batch-sizes"),
    }
    with ParetoClient(server) as client:
        current = client.models.GetServingConfig(models_pb2.GetServingConfigRequest(name=name))
        if any(v is not None for v in (*changes.values(), *warmup.values())):
            _apply(current.batching, changes)
            _apply(current.warmup, warmup)
            request = models_pb2.SetServingConfigRequest(name=name, config=current)
            current = client.models.SetServingConfig(request)
    if as_json:
        click.echo(json.dumps(to_dict(current), indent=2))
        return
    _show(name, current)


def _apply(message: object, changes: dict[str, object]) -> None:
    for field, value in changes.items():
        if value is None:
            continue
        if isinstance(value, list):
            del getattr(message, field)[:]
            getattr(message, field).extend(value)
        else:
            setattr(message, field, value)


def _show(name: str, current: models_pb2.ServingConfig) -> None:
    b, w = current.batching, current.warmup
    enabled = ("on" if b.enabled else "off") if b.HasField("enabled") else "auto"
    click.echo(
        f"{name}: batching {enabled}, max batch {b.max_batch_size}, "
        f"queue delay {b.max_queue_delay_us} us, queue size {b.max_queue_size}, "
        f"instances {b.instances or 'one per CPU'}"
    )
    if b.preferred_batch_sizes:
        click.echo(f"  preferred batch sizes: {list(b.preferred_batch_sizes)}")
    if b.pad_inputs:
        click.echo(f"  padded inputs: {', '.join(b.pad_inputs)}")
    click.echo(f"  warm-up: {w.runs} run(s) at batch sizes {list(w.batch_sizes)}")
