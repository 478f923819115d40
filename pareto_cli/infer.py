"""`pareto infer`: one KServe v2 inference through tritonclient, inputs from .npy files, or
strings (`--text`, one row each) for a model that takes text."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from pareto_cli.connection import connection_options, current_connection


@click.command()
@click.argument("model")
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="NAME=FILE.npy",
    help="An input tensor, repeatable.",
)
@click.option(
    "--text",
    "texts",
    multiple=True,
    help="A string (one row each, repeatable) for a model uploaded with a tokenizer.",
)
@click.option("--text-input", default="text", show_default=True, help="The text input's name.")
@click.option("--version", "model_version", default="", help="Model version (default latest).")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write each output to DIR/NAME.npy.",
)
@click.option("--json", "as_json", is_flag=True, help="Print outputs as JSON lists.")
@click.option("--server", envvar="PARETO_SERVER", default="127.0.0.1:8001", show_default=True)
@connection_options
def infer(model, inputs, texts, text_input, model_version, output_dir, as_json, server) -> None:
    """Run MODEL on the given inputs (or strings) and print (or save) its outputs."""
    import tritonclient.grpc as tc
    from tritonclient.utils import InferenceServerException, np_to_triton_dtype

    if bool(inputs) == bool(texts):
        raise click.UsageError("give --input NAME=FILE.npy (repeatable) or --text (repeatable)")
    tensors = []
    if texts:
        strings = np.array([t.encode("utf-8") for t in texts], dtype=object)
        tensor = tc.InferInput(text_input, [len(texts)], "BYTES")
        tensor.set_data_from_numpy(strings)
        tensors.append(tensor)
    for item in inputs:
        name, sep, file = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected NAME=FILE.npy, got {item!r}", param_hint="--input")
        array = np.load(file, allow_pickle=False)
        tensor = tc.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    connection = current_connection()
    client = tc.InferenceServerClient(server, **connection.triton_kwargs())
    try:
        result = client.infer(
            model, tensors, model_version=model_version, headers=connection.headers()
        )
    except InferenceServerException as exc:
        raise click.ClickException(f"{exc.status()}: {exc.message()}") from None
    finally:
        client.close()
    response = result.get_response()
    outputs = {o.name: result.as_numpy(o.name) for o in response.outputs}
    _show(outputs, response.model_version, output_dir, as_json)


def _show(outputs: dict[str, np.ndarray], version: str, output_dir: Path | None, as_json: bool):
    if output_dir:
        output_dir.mkdir(parents=True, exist_ok=True)
        for name, array in outputs.items():
            np.save(output_dir / f"{name}.npy", array, allow_pickle=False)
    if as_json:
        click.echo(json.dumps({n: a.tolist() for n, a in outputs.items()}))
        return
    click.echo(f"model version {version}")
    for name, array in outputs.items():
        preview = np.array2string(array.ravel()[:8], precision=4, separator=", ")
        click.echo(f"{name} {array.dtype} {list(array.shape)} {preview}")
