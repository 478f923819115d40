"""`pareto deploy`: endpoints serving a model's variants A/B (create, traffic, list, show,
delete). Targets are named by model_version: `1` (a version), `var-...` (a variant).

  pareto deploy create minilm --primary 1=50 --primary var-1a2b=50 --shadow 1
  pareto deploy create digits --primary 1 --primary var-1a2b --canary var-1a2b \\
      --steps 5,25,50,100 --min-requests 200 --dwell 60 --max-p99-ratio 1.5
  pareto deploy traffic minilm 1=90 var-1a2b=10
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import yaml
from google.protobuf.json_format import ParseDict
from rich.console import Console
from rich.table import Table

from pareto.v1 import deployments_pb2 as pb
from pareto_cli.client import ParetoClient
from pareto_cli.options import json_option, server_option, to_dict


@contextmanager
def deployment_stub(server: str):
    """A DeploymentService stub on the CLI's connection (token, TLS) to `server`."""
    with ParetoClient(server) as client:
        yield client.deployments


def _pair(text: str, option: str, default: str | None = None) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not key or (not sep and default is None):
        raise click.BadParameter(f"expected TARGET=VALUE, got {text!r}", param_hint=option)
    return key, value if sep else str(default)


def _number(text: str, option: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise click.BadParameter(f"expected a number, got {text!r}", param_hint=option) from None


canary_options = [
    click.option("--canary", default="", help="Target rolled out step by step (a primary)."),
    click.option("--steps", default="5,25,50,100", show_default=True, help="Canary percents."),
    click.option("--min-requests", type=int, default=100, show_default=True),
    click.option("--dwell", type=float, default=60.0, show_default=True, help="Seconds/step."),
    click.option("--max-p99-ratio", type=float, default=0.0, help="0 = not checked."),
    click.option("--max-error-rate-increase", type=float, default=0.0, show_default=True),
    click.option("--min-agreement", type=float, default=0.0, help="0 = not checked."),
    click.option("--agreement-measure", type=click.Choice(["", "cosine", "top1"]), default=""),
]


def with_canary_options(command: Any) -> Any:
    for option in reversed(canary_options):
        command = option(command)
    return command


def canary_plan(options: dict[str, Any]) -> pb.CanaryPlan | None:
    if not options["canary"]:
        return None
    steps = [_number(s, "--steps") for s in options["steps"].split(",") if s.strip()]
    return pb.CanaryPlan(
        canary=options["canary"],
        steps=steps,
        min_requests=options["min_requests"],
        dwell_seconds=options["dwell"],
        max_p99_latency_ratio=options["max_p99_ratio"],
        max_error_rate_increase=options["max_error_rate_increase"],
        min_agreement=options["min_agreement"],
        agreement_measure=options["agreement_measure"],
    )


@click.group()
def deploy() -> None:
    """Serve variants of a model behind one endpoint: A/B splits, shadows, canaries."""


@deploy.command("create")
@click.argument("endpoint")
@click.option("--model", default="", help="The uploaded model (default: ENDPOINT).")
@click.option("--primary", multiple=True, help="VERSION[=WEIGHT] answering requests.")
@click.option("--shadow", multiple=True, help="VERSION[=SAMPLE_RATE] getting copies.")
@click.option("--runtime", "runtimes", multiple=True, help="TARGET=RUNTIME (default: format's).")
@click.option(
    "--file",
    "spec_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML/JSON CreateDeploymentRequest (targets with runtime_options, canary).",
)
@with_canary_options
@json_option
@server_option
def create(endpoint, model, primary, shadow, runtimes, spec_file, as_json, server, **canary):
    """Create ENDPOINT (the model name KServe clients send)."""
    request = pb.CreateDeploymentRequest()
    if spec_file:
        ParseDict(yaml.safe_load(spec_file.read_text()) or {}, request)
    request.name = endpoint
    request.model = model or request.model or endpoint
    for text in primary:
        version, weight = _pair(text, "--primary", default="0")
        request.targets.add(model_version=version, weight=_number(weight, "--primary"))
    for text in shadow:
        version, rate = _pair(text, "--shadow", default="1")
        request.targets.add(
            model_version=version, role=pb.ROLE_SHADOW, sample_rate=_number(rate, "--shadow")
        )
    for text in runtimes:
        name, runtime = _pair(text, "--runtime")
        for target in request.targets:
            if name in (target.name, target.model_version):
                target.runtime = runtime
    plan = canary_plan(canary)
    if plan is not None:
        request.canary.CopyFrom(plan)
    with deployment_stub(server) as stub:
        show_deployment(stub.CreateDeployment(request), as_json)


@deploy.command("traffic")
@click.argument("endpoint")
@click.argument("weights", nargs=-1)
@with_canary_options
@json_option
@server_option
def traffic(endpoint, weights, as_json, server, **canary):
    """Set the primaries' weights (TARGET=PERCENT ...), or start a canary plan."""
    request = pb.UpdateTrafficRequest(name=endpoint)
    for text in weights:
        name, value = _pair(text, "WEIGHTS")
        request.weights[name] = _number(value, "WEIGHTS")
    plan = canary_plan(canary)
    if plan is not None:
        request.canary.CopyFrom(plan)
    with deployment_stub(server) as stub:
        show_deployment(stub.UpdateTraffic(request), as_json)


@deploy.command("list")
@json_option
@server_option
def list_deployments(as_json: bool, server: str) -> None:
    """List deployments."""
    with deployment_stub(server) as stub:
        found = list(stub.ListDeployments(pb.ListDeploymentsRequest()).deployments)
    if as_json:
        click.echo(json.dumps([to_dict(d) for d in found], indent=2))
        return
    for deployment in found:
        show_deployment(deployment, False)
    if not found:
        click.echo("no deployments yet")


@deploy.command("show")
@click.argument("endpoint")
@json_option
@server_option
def show(endpoint: str, as_json: bool, server: str) -> None:
    """Show one deployment."""
    with deployment_stub(server) as stub:
        show_deployment(stub.GetDeployment(pb.GetDeploymentRequest(name=endpoint)), as_json)


@deploy.command("delete")
@click.argument("endpoint")
@server_option
def delete(endpoint: str, server: str) -> None:
    """Delete a deployment (its own sessions are drained, then closed)."""
    with deployment_stub(server) as stub:
        stub.DeleteDeployment(pb.DeleteDeploymentRequest(name=endpoint))
    click.echo(f"deleted deployment {endpoint}")


def show_deployment(d: pb.Deployment, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(to_dict(d), indent=2))
        return
    table = Table(title=f"{d.name} (model {d.model}, revision {d.revision})")
    for column in ("target", "model_version", "role", "weight %", "runtime", "options"):
        table.add_column(column)
    for t in d.targets:
        role = pb.Role.Name(t.role).removeprefix("ROLE_").lower()
        if t.role == pb.ROLE_SHADOW:
            role += f" ({t.sample_rate:.0%} sampled)"
        options = json.dumps(to_dict(t.runtime_options)) if t.runtime_options.fields else ""
        table.add_row(
            t.name, t.model_version, role, f"{t.weight:g}", t.runtime or "(default)", options
        )
    Console().print(table)
    if d.HasField("canary"):
        status = d.canary_status
        state = pb.CanaryState.Name(status.state).removeprefix("CANARY_STATE_")
        steps = ", ".join(f"{s:g}%" for s in d.canary.steps)
        click.echo(f"canary {d.canary.canary}: {state} at step {status.step} of [{steps}]")
        if status.reason:
            click.echo(f"  reason: {status.reason}")
