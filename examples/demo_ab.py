"""The demo's A/B step: MiniLM fp32 and int8 50/50, the original as shadow, a report.

`pareto deploy create minilm --primary 1=50 --primary <int8 id>=50 --shadow 1`, then
sentences through tritonclient (each answer says which target gave it), then
`pareto report minilm`: requests, latency with confidence intervals, agreement of the
int8 answers with the fp32 shadow, and the significance tests.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from rich.console import Console

console = Console()
REQUESTS = 120


def ab_deploy_and_report(
    client: Any, address: str, run_cli: Callable[..., None], int8_variant: str
) -> None:
    """Deploy, send REQUESTS sentences one by one, wait for the shadow, print the report."""
    import tritonclient.grpc as grpcclient

    from examples.models import tokenize
    from examples.text import english_sentences

    run_cli(
        *("deploy", "create", "minilm", "--primary", "1=50", "--primary", f"{int8_variant}=50"),
        *("--shadow", "1", "--server", address),
    )
    answered: Counter[str] = Counter()
    for sentence in english_sentences(REQUESTS, seed=7):
        tensors = []
        for name, array in tokenize([sentence], seq_len=32).items():
            tensor = grpcclient.InferInput(name, list(array.shape), "INT64")
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        response = client.infer("minilm", tensors).get_response()
        answered[response.parameters["pareto_variant"].string_param] += 1
    console.print(f"{REQUESTS} sentences answered by: {dict(answered)}")
    wait_for_shadow(address, answered[int8_variant])
    run_cli("report", "minilm", "--server", address)


def wait_for_shadow(address: str, copies: int, timeout_s: float = 30.0) -> None:
    """Until every copy of an int8 answer was compared on the shadow (or dropped)."""
    from pareto.v1 import deployments_pb2 as pb
    from pareto_cli.client import ParetoClient

    deadline = time.monotonic() + timeout_s
    with ParetoClient(address) as pareto:
        stub = pareto.deployments
        while time.monotonic() < deadline:
            report = stub.GetDeploymentReport(pb.GetDeploymentReportRequest(name="minilm"))
            shadow = next(t for t in report.targets if t.role == pb.ROLE_SHADOW)
            if shadow.comparisons + shadow.shadow_dropped >= copies:
                return
            time.sleep(0.1)
