"""`pareto search`: explore recipes for a model and keep the frontier of what was measured
(`pareto frontier` and `pareto report` show it: pareto_cli/frontier.py, report.py).

  pareto search digits --eval digits-eval --calibration digits-calib --training digits-train \\
      --objective latency_p50 --objective size --max-drop 1% --trials 30 --wait --plot f.png
  pareto search digits --resume job-1a2b3c --trials 10 --parallelism 2 --wait
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from pareto.v1 import jobs_pb2
from pareto_cli.client import ParetoClient
from pareto_cli.frontier_view import search_table, summary_lines
from pareto_cli.options import json_option, server_option, to_dict

OBJECTIVES = ("latency_p50", "latency_p99", "size", "compressed_size", "memory")
# What a resumed search keeps from the one it continues (only --trials, --timeout,
# --sampler, --seed and --parallelism may be given).
RESUME_KEEPS = (
    "evaluation",
    "calibration",
    "training",
    "objectives",
    "max_drop",
    "max_latency_ms",
    "max_size",
    "max_memory",
    "techniques",
    "max_steps",
    "batch_size",
    "batch_sizes",
    "iterations",
    "runtime",
)
_BYTE_UNITS = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1024, "mib": 1024**2}


def parse_fraction(text: str | None, option: str) -> float | None:
    """ "1%" -> 0.01, "0.01" -> 0.01."""
    if text is None:
        return None
    try:
        if text.strip().endswith("%"):
            return float(text.strip()[:-1]) / 100
        return float(text)
    except ValueError:
        raise click.BadParameter(
            f"expected a fraction or a percent, got {text!r}", param_hint=option
        ) from None


def parse_bytes(text: str | None, option: str) -> int | None:
    """ "40000", "40KB", "1.5MB", "2MiB" -> bytes."""
    if text is None:
        return None
    clean = text.strip().lower().replace(" ", "")
    number = clean.rstrip("bgikm")
    unit = clean[len(number) :]
    try:
        return int(float(number) * _BYTE_UNITS[unit])
    except (ValueError, KeyError):
        raise click.BadParameter(
            f"expected bytes such as 40000, 40KB or 2MiB, got {text!r}", param_hint=option
        ) from None


def search_request(model: str, o: dict[str, Any]) -> jobs_pb2.CreateJobRequest:
    spec = jobs_pb2.SearchSpec(
        n_trials=o["trials"],
        timeout_s=o["timeout"],
        sampler=o["sampler"] or "",
        seed=o["seed"],
        resume_from=o["resume"] or "",
        parallelism=o["parallelism"],
    )
    request = jobs_pb2.CreateJobRequest(model=model, model_version=o["model_version"])
    kept = [k for k in RESUME_KEEPS if o[k]]
    if o["resume"] and kept:
        options = ", ".join("--" + k.replace("_", "-") for k in kept)
        raise click.UsageError(f"--resume keeps the search's settings; drop {options}")
    if not o["resume"]:
        spec.objectives.extend(o["objectives"])
        spec.techniques.extend(o["techniques"])
        spec.batch_size = o["batch_size"]
        spec.max_steps = o["max_steps"]
        limits = {
            "max_quality_drop": parse_fraction(o["max_drop"], "--max-drop"),
            "max_latency_ms": o["max_latency_ms"],
            "max_size_bytes": parse_bytes(o["max_size"], "--max-size"),
            "max_memory_bytes": parse_bytes(o["max_memory"], "--max-memory"),
        }
        for key, value in limits.items():
            if value is not None:
                setattr(spec.constraints, key, value)
        roles = {
            "calibration": o["calibration"],
            "training": o["training"],
            "evaluation": o["evaluation"],
        }
        request.datasets.update({r: n for r, n in roles.items() if n})
        request.evaluation.CopyFrom(
            jobs_pb2.EvaluationSettings(
                batch_sizes=list(o["batch_sizes"]),
                iterations=o["iterations"],
                runtime=o["runtime"] or "",
            )
        )
    request.search.CopyFrom(spec)
    return request


def show_result(
    result: jobs_pb2.SearchResult, as_json: bool, plot: Path | None, show_all: bool
) -> None:
    if as_json:
        click.echo(json.dumps(to_dict(result), indent=2))
    else:
        console = Console()
        console.print(search_table(result, show_all))
        for line in summary_lines(result):
            console.print(line, markup=False, highlight=False)
    if plot is not None:
        from pareto_cli.frontier_plot import plot_result

        written = plot_result(result, plot)
        click.echo(f"plot written to {written}", err=True)


def get_search(client: ParetoClient, model: str, job_id: str = "") -> jobs_pb2.SearchResult:
    request = jobs_pb2.GetSearchRequest(id=job_id, model="" if job_id else model)
    return client.jobs.GetSearch(request)


@click.command()
@click.argument("model")
@click.option("--version", "model_version", type=int, default=0, help="0 = latest.")
@click.option("--eval", "evaluation", default="", help="Evaluation dataset (quality).")
@click.option("--calibration", default="", help="Calibration dataset (static int8).")
@click.option("--training", default="", help="Training dataset (fine-tuning, distillation).")
@click.option(
    "--objective",
    "objectives",
    multiple=True,
    type=click.Choice(OBJECTIVES),
    help="Minimized, the first one primary (default: latency_p50, size).",
)
@click.option("--max-drop", help="Largest quality drop, e.g. 1% (default 1%).")
@click.option("--max-latency-ms", type=float, help="Latency limit at --batch-size.")
@click.option("--max-size", help="File size limit, e.g. 20KB.")
@click.option("--max-memory", help="Memory limit, e.g. 200MB.")
@click.option("--trials", type=int, default=0, help="Trials to run (default 20).")
@click.option("--timeout", type=float, default=0.0, help="Seconds of trials (0 = no limit).")
@click.option("--technique", "techniques", multiple=True, help="Explore only these.")
@click.option("--sampler", type=click.Choice(["tpe", "nsga2", "random"]), default=None)
@click.option("--seed", type=int, default=0)
@click.option("--max-steps", type=int, default=0, help="Techniques per recipe: 1 or 2.")
@click.option("--parallelism", type=int, default=0, help="Trials at once (default 1).")
@click.option("--batch-size", type=int, default=0, help="Batch of the latency objectives.")
@click.option("--batch-sizes", multiple=True, type=int, help="Batch sizes measured.")
@click.option("--iterations", type=int, default=0, help="Timed runs per batch size.")
@click.option("--runtime", default="", help="Runtime measured (default onnxruntime_cpu).")
@click.option("--resume", default="", help="A search job id: continue it with --trials more.")
@click.option("--wait", is_flag=True, help="Follow the search, then show the frontier.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="PNG (--wait).")
@json_option
@server_option
def search(
    model: str, wait: bool, plot: Path | None, as_json: bool, server: str, **options: Any
) -> None:
    """Search recipes for MODEL and keep the frontier of what was measured."""
    from pareto_cli.jobs import follow

    if plot is not None and not wait:
        raise click.UsageError("--plot draws the finished search: add --wait")
    request = search_request(model, options)
    with ParetoClient(server) as client:
        job = client.jobs.CreateJob(request)
        if not wait:
            click.echo(json.dumps(to_dict(job), indent=2) if as_json else f"search {job.id} queued")
            return
        click.echo(f"search {job.id} started for {job.model} version {job.model_version}", err=True)
        follow(client, job.id)
        result = get_search(client, model, job.id)
    show_result(result, as_json, plot, show_all=False)
    if result.state != jobs_pb2.JOB_STATE_SUCCEEDED:
        sys.exit(1)
