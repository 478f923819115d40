"""End-to-end demo (`make demo`): serve, upload, infer, compress, serve the variants.

Starts `pareto serve` on free loopback ports with a fresh data dir under ./.demo, builds the
digits CNN and MiniLM, uploads both with the `pareto upload` CLI, runs them through
`tritonclient.grpc.InferenceServerClient` (checking every answer against ONNX Runtime run
here) and shows latencies; uploads MiniLM again as its Hugging Face folder and sends it
text (`pareto infer --text`, and BYTES through tritonclient). Then it uploads the example
datasets with `pareto datasets upload`, compresses both models with `pareto compress` and
the recipes in examples/recipes/ (MiniLM: dynamic int8; digits: static int8, 50%
structured pruning, and a short distillation into a quarter-size student beside QAT int8),
prints the measured variants, and runs each variant through the same Triton client by
`model_version`. Then `pareto deploy` serves MiniLM fp32 and int8 50/50 behind the
endpoint `minilm` with the original as shadow, sends sentences, and `pareto report`
compares the two from the gateway's counters (examples/demo_ab.py). Last, an excerpt
of the gateway's `pareto_` metrics, and the server is stopped with SIGTERM and must exit 0.
Any failure ends the demo with a message and exit status 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from rich.console import Console
from rich.table import Table

from bench.common import REPO_ROOT, GatewayError, GatewayProcess, fresh_dir, pareto_command
from examples.demo_ab import ab_deploy_and_report

DEMO_DIR = REPO_ROOT / ".demo"
LATENCY_REQUESTS = 40
SENTENCES = (
    "A man is playing a guitar on stage.",
    "Someone performs a song with a musical instrument.",
    "The committee approved the budget for next year.",
)
# One ONNX Runtime thread, as compression jobs measure with (PARETO_JOB_THREADS=1): the
# demo's client shares this machine's cores with the gateway, so more threads would only
# make the two fight and blur the comparison of parents and variants.
SERVER_ENV = {"PARETO_ORT_INTRA_OP_THREADS": "1", "PARETO_ORT_INTER_OP_THREADS": "1"}
console = Console()


class DemoError(RuntimeError):
    """A check of the demo failed; the message says which and what was seen."""


def step(text: str) -> None:
    console.print(f"\n[bold cyan]==>[/] [bold]{text}[/]")


def run_cli(*args: str) -> None:
    """A `pareto` command as a user would type it (progress bars on a terminal)."""
    # Piped to a log, rich would lay tables out for 80 columns: give them room.
    env = os.environ if sys.stdout.isatty() else {**os.environ, "COLUMNS": "160"}
    done = subprocess.run([*pareto_command(), *args], cwd=REPO_ROOT, env=env, check=False)
    if done.returncode != 0:
        raise DemoError(f"`pareto {' '.join(args)}` exited {done.returncode}")


def triton_infer(
    client: Any, model: str, inputs: dict[str, np.ndarray], output: str, version: str = ""
):
    """One KServe v2 inference through the unmodified Triton gRPC client."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    tensors = []
    for name, array in inputs.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(np.ascontiguousarray(array))
        tensors.append(tensor)
    requested = [grpcclient.InferRequestedOutput(output)]
    result = client.infer(model, tensors, model_version=version, outputs=requested)
    return result.as_numpy(output)


def ort_run(path: Path, inputs: dict[str, np.ndarray], output: str) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([output], inputs)[0]


def check_close(what: str, got: np.ndarray, want: np.ndarray) -> None:
    if got.shape != want.shape or not np.allclose(got, want, rtol=1e-4, atol=1e-5):
        diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("nan")
        raise DemoError(
            f"{what}: gateway output (shape {got.shape}) differs from ONNX Runtime "
            f"(shape {want.shape}), max abs diff {diff:g}"
        )


def demo_digits(client: Any, digits: Any) -> dict[str, np.ndarray]:
    """Classify a few held-out digits through the gateway; show predicted vs true."""
    inputs = {"pixels": digits.X_test[:12]}
    logits = triton_infer(client, "digits", inputs, "logits")
    check_close("digits logits", logits, ort_run(digits.path, inputs, "logits"))
    predicted, true = logits.argmax(axis=1), digits.y_test[:12]
    table = Table("", *(str(i) for i in range(len(true))), title="digits: 12 held-out images")
    table.add_row("true", *(str(t) for t in true))
    table.add_row("predicted", *(_colored(p, t) for p, t in zip(predicted, true, strict=True)))
    console.print(table)
    console.print(f"held-out accuracy when built: {digits.accuracy:.1%}")
    return inputs


def _colored(predicted: int, true: int) -> str:
    return f"[green]{predicted}[/]" if predicted == true else f"[red]{predicted}[/]"


def demo_minilm(client: Any, path: Path) -> dict[str, np.ndarray]:
    """Embed three sentences through the gateway; a related pair must score higher."""
    from examples.models import tokenize

    inputs = tokenize(SENTENCES, seq_len=32)
    embeddings = triton_infer(client, "minilm", inputs, "embedding")
    check_close("minilm embeddings", embeddings, ort_run(path, inputs, "embedding"))
    related = float(embeddings[0] @ embeddings[1])
    unrelated = float(embeddings[0] @ embeddings[2])
    for label, (a, b), score in (("related", (0, 1), related), ("unrelated", (0, 2), unrelated)):
        console.print(f"{label:>9}: cos={score:+.3f}  {SENTENCES[a]!r} ~ {SENTENCES[b]!r}")
    if not related > unrelated:
        raise DemoError(f"minilm: related pair cosine {related:.3f} <= unrelated {unrelated:.3f}")
    return inputs


def demo_hf_folder(client: Any, address: str, reference: np.ndarray) -> None:
    """MiniLM uploaded as its Hugging Face folder (exported to ONNX at upload, checked
    against torch), then called with strings: the gateway tokenizes them."""
    import tritonclient.grpc as grpcclient

    from examples.models import minilm_dir

    run_cli("upload", str(minilm_dir()), "--name", "minilm-hf", "--server", address)
    run_cli("infer", "minilm-hf", "--text", SENTENCES[0], "--server", address)
    tensor = grpcclient.InferInput("text", [len(SENTENCES)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in SENTENCES], dtype=object))
    got = client.infer("minilm-hf", [tensor]).as_numpy("sentence_embedding")
    cosine = (
        (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
    )
    console.print(f"text in: cosine with the token-id MiniLM's embeddings {cosine.min():.5f} (min)")
    if not cosine.min() > 0.999:
        raise DemoError(f"minilm-hf: text embeddings differ from the token-id model's ({cosine})")


def p50_ms(
    client: Any, model: str, inputs: dict[str, np.ndarray], output: str, version: str = ""
) -> float:
    times = []
    for _ in range(LATENCY_REQUESTS):
        start = time.perf_counter()
        triton_infer(client, model, inputs, output, version)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def model_row(client: Any, name: str, path: Path, latency_ms: float) -> list[str]:
    """One summary row: name, file size, inputs and outputs as the gateway reports them."""
    meta = client.get_model_metadata(name)

    def specs(tensors: Any) -> str:
        return "\n".join(f"{t.name} {t.datatype}[{','.join(map(str, t.shape))}]" for t in tensors)

    size = _human_bytes(path.stat().st_size)
    return [name, size, specs(meta.inputs), specs(meta.outputs), f"{latency_ms:.2f}"]


def _human_bytes(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def show_metrics(url: str, per_family: int = 3) -> None:
    """The gateway's own series (pareto_*), a few of each family, without histogram
    buckets, for brevity."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    shown: dict[str, int] = {}
    for line in text.splitlines():
        if not line.startswith("pareto_") or "_bucket{" in line or "_created" in line:
            continue
        family = line.split("{")[0].split(" ")[0].removesuffix("_sum").removesuffix("_count")
        shown[family] = shown.get(family, 0) + 1
        if shown[family] <= per_family:
            console.print(line, highlight=False, soft_wrap=True)
    if not shown:
        raise DemoError(f"{url} has no pareto_ metrics")
    console.print(f"[dim]({sum(shown.values())} pareto_ series in {len(shown)} families)[/]")


def compress_and_serve(client: Any, address: str, batches: dict[str, tuple[dict, str]]) -> None:
    """Upload the example datasets, compress both models, serve every variant next to its
    parent: p50 at batch 1, and agreement with the parent on the demo's batch."""
    from examples.datasets import write_example_datasets

    step("uploading the example datasets with `pareto datasets upload`")
    for name, path in write_example_datasets(DEMO_DIR / "datasets").items():
        run_cli("datasets", "upload", str(path), "--name", name, "--server", address)
    for model, recipe in COMPRESSIONS:
        step(f"`pareto compress {model} --recipe {recipe} --wait`")
        run_cli("compress", model, "--recipe", recipe, "--wait", "--server", address)
    step("parents and variants through tritonclient.grpc (variant: model_version=<id>)")
    table = Table("model", "model_version", "p50 ms @b1", "x parent", "agreement with the parent")
    for model, (inputs, output) in batches.items():
        one = {k: v[:1] for k, v in inputs.items()}
        parent = triton_infer(client, model, inputs, output)
        parent_p50 = p50_ms(client, model, one, output)
        table.add_row(model, "(parent)", f"{parent_p50:.2f}", "1.00x", "")
        for variant in list_variants(address, model):
            got = triton_infer(client, model, inputs, output, variant)
            p50 = p50_ms(client, model, one, output, variant)
            table.add_row(
                model, variant, f"{p50:.2f}", f"{p50 / parent_p50:.2f}x", agreement(got, parent)
            )
    console.print(table)
    console.print(
        "[dim]At batch 1 the digits CNN computes for ~15 us under ~1 ms of gRPC, so its "
        "end-to-end p50s are transport; the jobs' own tables above compare the models.[/]"
    )


COMPRESSIONS = (
    ("minilm", "examples/recipes/minilm-dynamic.yaml"),
    ("digits", "examples/recipes/digits-static.yaml"),
    ("digits", "examples/recipes/digits-structured.yaml"),
    ("digits", "examples/recipes/digits-distill.yaml"),  # a 1/4 student by KD, and QAT int8
)


SEARCH_TRIALS = 12
FRONTIER_PLOT = DEMO_DIR / "digits-frontier.png"


def search_frontier(address: str) -> None:
    """A small frontier search on the digits CNN (1 pp accuracy budget, latency at batch 64
    and size), its table, and the plot."""
    step(f"`pareto search digits --trials {SEARCH_TRIALS} --max-drop 1% --wait`: the frontier")
    run_cli(
        "search", "digits", "--eval", "digits-eval", "--calibration", "digits-calib",
        "--training", "digits-train", "--max-drop", "1%", "--batch-size", "64",
        "--trials", str(SEARCH_TRIALS), "--seed", "0", "--wait", "--plot", str(FRONTIER_PLOT),
        "--server", address,
    )  # fmt: skip
    console.print(
        f"[dim]frontier plot: {FRONTIER_PLOT.relative_to(REPO_ROOT)}; again any time with "
        "`pareto report digits --plot FILE`[/]"
    )


def list_variants(address: str, model: str) -> list[str]:
    from pareto.v1 import variants_pb2
    from pareto_cli.client import ParetoClient

    with ParetoClient(address) as pareto:
        found = pareto.variants.ListVariants(variants_pb2.ListVariantsRequest(model=model))
    return [v.id for v in found.variants]


def agreement(got: np.ndarray, parent: np.ndarray) -> str:
    """Classifier logits: same top-1 class; embeddings: mean cosine similarity."""
    n = len(parent)
    if parent.shape[1] == 10:  # the digits classifier
        same = int((got.argmax(axis=1) == parent.argmax(axis=1)).sum())
        return f"top-1 {same}/{n} images"
    cosine = (got * parent).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(parent, axis=1)
    return f"cosine {cosine.mean():.4f} ({n} sentences)"


def run_demo(server: GatewayProcess) -> None:
    import tritonclient.grpc as grpcclient

    from examples.models import build_digits_cnn, export_minilm

    step("building the demo models (cached in .demo/models)")
    digits = build_digits_cnn(DEMO_DIR / "models" / "digits_cnn.onnx")
    minilm = export_minilm(DEMO_DIR / "models" / "minilm.onnx")
    step("uploading with `pareto upload`")
    for built, name in ((digits, "digits"), (minilm, "minilm")):
        run_cli("upload", str(built.path), "--name", name, "--server", server.address)
    client = grpcclient.InferenceServerClient(server.address)
    try:
        if not (client.is_server_live() and client.is_server_ready()):
            raise DemoError("gateway reports not live/ready over KServe v2")
        step("digits CNN through tritonclient.grpc")
        digit_batch = demo_digits(client, digits)
        step("MiniLM sentence embeddings through tritonclient.grpc")
        sentence_batch = demo_minilm(client, minilm.path)
        step("MiniLM as a Hugging Face folder (`pareto upload DIR`), text in (`--text`)")
        reference = triton_infer(client, "minilm", sentence_batch, "embedding")
        demo_hf_folder(client, server.address, reference)
        step(f"latency: p50 of {LATENCY_REQUESTS} sequential batch-1 requests")
        table = Table("model", "size", "inputs", "outputs", "p50 ms", title="served models")
        for name, path, inputs, output in (
            ("digits", digits.path, digit_batch, "logits"),
            ("minilm", minilm.path, sentence_batch, "embedding"),
        ):
            one = {k: v[:1] for k, v in inputs.items()}
            table.add_row(*model_row(client, name, path, p50_ms(client, name, one, output)))
        console.print(table)
        batches = {"digits": (digit_batch, "logits"), "minilm": (sentence_batch, "embedding")}
        compress_and_serve(client, server.address, batches)
        step("A/B serving: MiniLM fp32 and int8 50/50, the original as shadow")
        int8 = list_variants(server.address, "minilm")[0]
        ab_deploy_and_report(client, server.address, run_cli, int8)
        search_frontier(server.address)
    finally:
        client.close()
    step(f"metrics excerpt from {server.metrics_url}")
    show_metrics(server.metrics_url)


def main() -> int:
    from tritonclient.utils import InferenceServerException

    server = GatewayProcess(fresh_dir(DEMO_DIR / "data"), DEMO_DIR / "server.log", SERVER_ENV)
    step(f"starting `pareto serve` (data dir {server.data_dir.relative_to(REPO_ROOT)})")
    try:
        server.start()
        console.print(f"SERVING on {server.address}, metrics on {server.metrics_url}")
        run_demo(server)
        step("stopping the gateway (SIGTERM)")
        code = server.stop()
        if code != 0:
            raise DemoError(f"gateway exited with code {code} after SIGTERM, expected 0")
    except (DemoError, GatewayError, grpc.RpcError, InferenceServerException, OSError) as exc:
        console.print(f"\n[bold red]demo failed:[/] {exc}")
        tail = server.log_tail()
        if tail:
            console.print(f"[dim]last lines of {server.log_path}:[/]\n{tail}", highlight=False)
        return 1
    finally:
        server.stop()
    console.print("\n[bold green]demo finished: gateway stopped cleanly (exit code 0)[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
