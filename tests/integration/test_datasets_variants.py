"""DatasetService and VariantService through the real server, and their CLI commands."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc
from click.testing import CliRunner

from pareto.v1 import datasets_pb2, variants_pb2
from pareto_cli.datasets import datasets as datasets_cli
from pareto_cli.datasets import upload_dataset
from pareto_cli.variants import variants as variants_cli
from service.server import GatewayServer
from service.store.records import RecipeSpec, VariantRecord
from tests.helpers.deployments import insert_variant as insert_any_variant
from tests.helpers.gateway_settings import make_settings

VARIANT_ID = "var-0123456789"
RECIPE = RecipeSpec("int8", ({"technique": "quantize.static", "config": {"per_channel": True}},))


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayServer]:
    """The shared real server, without the memory probe child process (not tested here)."""
    server = GatewayServer(make_settings(tmp_path / "data", measure_memory=False))
    server.start()
    yield server
    server.stop(grace=1.0)


def npz_file(tmp_path: Path, name: str = "d.npz", **arrays: np.ndarray) -> Path:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path = tmp_path / name
    path.write_bytes(buffer.getvalue())
    return path


def stored_files(gateway: GatewayServer, folder: str) -> list[Path]:
    return sorted(p for p in (gateway.settings.data_dir / folder).rglob("*") if p.is_file())


def rpc_error(call, *args) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call(*args)
    return err.value


# -- datasets ----------------------------------------------------------------------------


def test_upload_list_get_and_delete_a_dataset(client, gateway, digits_model, tmp_path):
    x = digits_model.X_test[:50].astype(np.float32)
    path = npz_file(tmp_path, pixels=x, labels=digits_model.y_test[:50])
    dataset = upload_dataset(client, path, "digits-test", "held-out digits")
    assert (dataset.name, dataset.num_samples, dataset.has_labels) == ("digits-test", 50, True)
    assert [(a.name, a.datatype, list(a.shape)) for a in dataset.arrays] == [
        ("pixels", "FP32", [50, 1, 8, 8]),
        ("labels", "INT64", [50]),
    ]
    assert dataset.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    listed = client.datasets.ListDatasets(datasets_pb2.ListDatasetsRequest()).datasets
    assert list(listed) == [dataset]
    get = client.datasets.GetDataset
    assert get(datasets_pb2.GetDatasetRequest(name="digits-test")) == dataset
    again = rpc_error(upload_dataset, client, path, "digits-test")
    assert again.code() == grpc.StatusCode.ALREADY_EXISTS

    delete = client.datasets.DeleteDataset
    assert delete(datasets_pb2.DeleteDatasetRequest(name="digits-test")) == dataset
    assert stored_files(gateway, "blobs") == []
    missing = rpc_error(get, datasets_pb2.GetDatasetRequest(name="digits-test"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND and "digits-test" in missing.details()


def _messages(header: datasets_pb2.DatasetHeader, data: bytes):
    yield datasets_pb2.UploadDatasetRequest(header=header)
    yield datasets_pb2.UploadDatasetRequest(chunk=data)


def _bad_upload(kind: str, tmp_path: Path) -> tuple[datasets_pb2.DatasetHeader, bytes]:
    arrays = {
        "pickled": {"x": np.array([{"a": 1}, None], dtype=object)},
        "mismatched": {"x": np.zeros((5, 3), np.float32), "labels": np.zeros(4, np.int64)},
    }.get(kind, {"x": np.zeros((5, 3), np.float32)})
    data = npz_file(tmp_path, **arrays).read_bytes()
    header = datasets_pb2.DatasetHeader(
        name="bad", size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    if kind == "wrong-sha":
        header.sha256 = "0" * 64
    if kind == "too-large":
        header.size_bytes = 5 * 1024**3
    return header, data


@pytest.mark.parametrize(
    ("kind", "code", "pattern"),
    [
        ("pickled", grpc.StatusCode.INVALID_ARGUMENT, "pickled objects are refused"),
        ("mismatched", grpc.StatusCode.INVALID_ARGUMENT, "'x' has 5, 'labels' has 4"),
        ("wrong-sha", grpc.StatusCode.INVALID_ARGUMENT, "corrupt: sha256"),
        ("too-large", grpc.StatusCode.RESOURCE_EXHAUSTED, "PARETO_MAX_MODEL_BYTES"),
    ],
)
def test_bad_dataset_uploads_get_the_right_code_and_leave_no_trace(
    client, gateway, tmp_path, kind, code, pattern
):
    header, data = _bad_upload(kind, tmp_path)
    err = rpc_error(client.datasets.UploadDataset, _messages(header, data))
    assert err.code() == code
    assert pattern in err.details()
    assert stored_files(gateway, "tmp") == [] and stored_files(gateway, "blobs") == []
    assert list(client.datasets.ListDatasets(datasets_pb2.ListDatasetsRequest()).datasets) == []


def test_an_upload_must_start_with_its_header(client):
    chunks = iter([datasets_pb2.UploadDatasetRequest(chunk=b"PK")])
    err = rpc_error(client.datasets.UploadDataset, chunks)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "header" in err.details()


# -- variants ----------------------------------------------------------------------------


def measurement(size: int, p50_ms: float, accuracy: float) -> dict:
    return {
        "size_bytes": size,
        "compressed_size_bytes": size // 2,
        "parameters": 1000,
        "sparsity": 0.0,
        "latency": [
            {"batch_size": 8, "p50_ms": p50_ms * 3, "throughput_per_s": 100.0},
            {"batch_size": 1, "p50_ms": p50_ms, "p90_ms": p50_ms * 1.2, "throughput_per_s": 50.0},
        ],
        "memory_bytes": 2_000_000,
        "quality": {"accuracy": accuracy, "loss": 0.1},
    }


def insert_variant(gateway: GatewayServer, parent_path: Path) -> VariantRecord:
    """A digits variant with measurements, as a job stores it."""
    return insert_any_variant(
        gateway,
        "digits",
        parent_path,
        VARIANT_ID,
        recipe=RECIPE,
        metrics=lambda size, parent: measurement(size, 0.5, 0.95),
        parent_metrics=lambda size, parent: measurement(parent.size_bytes, 1.0, 0.96),
        report={"steps": [{"calibrated": 50}]},
    )


@pytest.fixture
def digits_variant(client, gateway, digits_model) -> VariantRecord:
    client.upload(digits_model.path, "digits")
    return insert_variant(gateway, digits_model.path)


def test_list_and_get_variants(client, digits_variant):
    listed = client.variants.ListVariants(variants_pb2.ListVariantsRequest(model="digits"))
    (v,) = listed.variants
    assert (v.id, v.serving_name, v.parent_model, v.parent_version) == (
        VARIANT_ID,
        f"digits.{VARIANT_ID}",
        "digits",
        1,
    )
    assert v.recipe.name == "int8" and v.recipe.steps[0].technique == "quantize.static"
    assert v.recipe.steps[0].config["per_channel"] is True
    assert [i.name for i in v.inputs] == ["pixels"] and v.budget_ok
    assert v.metrics.quality["accuracy"] == 0.95 and v.parent_metrics.quality["accuracy"] == 0.96
    assert [s.batch_size for s in v.metrics.latency] == [8, 1]
    assert json.loads(v.report_json) == {"steps": [{"calibrated": 50}]}
    every = client.variants.ListVariants(variants_pb2.ListVariantsRequest()).variants
    assert list(every) == [v]
    assert client.variants.GetVariant(variants_pb2.GetVariantRequest(id=VARIANT_ID)) == v

    for call, request in (
        (client.variants.ListVariants, variants_pb2.ListVariantsRequest(model="nope")),
        (client.variants.GetVariant, variants_pb2.GetVariantRequest(id="var-ffffffffff")),
        (client.variants.DeleteVariant, variants_pb2.DeleteVariantRequest(id="var-ffffffffff")),
    ):
        err = rpc_error(call, request)
        assert err.code() == grpc.StatusCode.NOT_FOUND


def test_a_served_variant_is_deleted_only_once_unloaded(
    client, gateway, triton, digits_model, digits_variant
):
    serving_name = digits_variant.serving_name
    pixels = tc.InferInput("pixels", [2, 1, 8, 8], "FP32")
    pixels.set_data_from_numpy(digits_model.X_test[:2].astype(np.float32))
    assert triton.infer(serving_name, [pixels]).as_numpy("logits").shape == (2, 10)

    delete = client.variants.DeleteVariant
    request = variants_pb2.DeleteVariantRequest(id=VARIANT_ID)
    err = rpc_error(delete, request)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert serving_name in err.details() and "unload" in err.details()
    assert gateway.blobs.exists(digits_variant.sha256)

    triton.unload_model(serving_name)
    assert delete(request).id == VARIANT_ID
    assert not gateway.blobs.exists(digits_variant.sha256)
    assert gateway.blobs.exists(gateway.repo.get_model("digits").sha256)  # the parent stays
    assert rpc_error(delete, request).code() == grpc.StatusCode.NOT_FOUND


def test_a_model_with_variants_is_not_deleted_until_they_are(client, gateway, digits_variant):
    with pytest.raises(grpc.RpcError) as err:
        client.delete_model("digits")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert VARIANT_ID in err.value.details() and "delete them first" in err.value.details()
    assert gateway.repo.get_model("digits")  # nothing changed

    client.variants.DeleteVariant(variants_pb2.DeleteVariantRequest(id=VARIANT_ID))
    assert [m.name for m in client.delete_model("digits")] == ["digits"]


# -- CLI ---------------------------------------------------------------------------------


def test_datasets_cli_uploads_and_lists(address, digits_model, tmp_path):
    path = npz_file(tmp_path, pixels=digits_model.X_test[:20].astype(np.float32))
    runner = CliRunner(env={"COLUMNS": "200"})  # rich's table width off a terminal
    server = ["--server", address]
    uploaded = runner.invoke(datasets_cli, ["upload", str(path), "--name", "calib", *server])
    assert uploaded.exit_code == 0, uploaded.output
    assert "uploaded dataset calib: 20 samples (pixels)" in uploaded.output
    listed = runner.invoke(datasets_cli, ["--json", *server])
    assert [(d["name"], d["num_samples"]) for d in json.loads(listed.output)] == [("calib", "20")]
    table = runner.invoke(datasets_cli, ["list", *server])
    assert "calib" in table.output and "FP32[20,1,8,8]" in table.output
    deleted = runner.invoke(datasets_cli, ["delete", "calib", *server])
    assert deleted.exit_code == 0, deleted.output
    assert json.loads(runner.invoke(datasets_cli, ["--json", *server]).output) == []


def test_variants_cli_prints_ratios_against_the_parent(address, digits_variant):
    runner = CliRunner(env={"COLUMNS": "200"})
    table = runner.invoke(variants_cli, ["digits", "--server", address])
    assert table.exit_code == 0, table.output
    for expected in (VARIANT_ID, "quantize.static", "0.500 ms @b1", "0.50x", "-1.00 pp", "yes"):
        assert expected in table.output
    as_json = runner.invoke(variants_cli, ["digits", "--json", "--server", address])
    assert [v["id"] for v in json.loads(as_json.output)] == [VARIANT_ID]
