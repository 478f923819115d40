"""Compression jobs through a real gateway: settings that load the test techniques
(tests.helpers.job_techniques, a plug-in of the server and its workers), recipe steps,
job calls, the digits model and dataset, and watching worker processes."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tritonclient.grpc as tc
from google.protobuf import struct_pb2

from examples.models import BuiltModel
from pareto.v1 import datasets_pb2, jobs_pb2
from pareto_cli.client import ParetoClient
from service.settings import Settings
from tests.helpers.gateway_settings import make_settings

PLUGIN = "tests.helpers.job_techniques"
STATE = jobs_pb2.JobState


def job_settings(data_dir: Path, **overrides: object) -> Settings:
    values = {"extra_technique_modules": PLUGIN, "measure_memory": False} | overrides
    return make_settings(data_dir, **values)


def wait_for(predicate: Callable[[], object], what: str, timeout_s: float = 60.0) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def step(technique: str, **config: object) -> jobs_pb2.RecipeStep:
    struct = struct_pb2.Struct()
    struct.update(config)
    return jobs_pb2.RecipeStep(technique=technique, config=struct)


def create_job(client: ParetoClient, *recipes: jobs_pb2.Recipe, **fields) -> jobs_pb2.Job:
    request = jobs_pb2.CreateJobRequest(
        model=fields.pop("model", "digits"),
        recipes=list(recipes),
        evaluation=jobs_pb2.EvaluationSettings(batch_sizes=[1], iterations=3),
        **fields,
    )
    return client.jobs.CreateJob(request)


def slow_recipe(seconds: float, pid_file: Path | None = None) -> jobs_pb2.Recipe:
    config: dict[str, object] = {"seconds": seconds}
    if pid_file is not None:
        config["pid_file"] = str(pid_file)
    return jobs_pb2.Recipe(name="slow", steps=[step("test.slow", **config)])


def watch(client: ParetoClient, job_id: str, from_sequence: int = 0) -> list[jobs_pb2.JobEvent]:
    request = jobs_pb2.WatchJobRequest(id=job_id, from_sequence=from_sequence)
    return list(client.jobs.WatchJob(request, timeout=120))


def get_job(client: ParetoClient, job_id: str) -> jobs_pb2.Job:
    return client.jobs.GetJob(jobs_pb2.GetJobRequest(id=job_id))


def upload_dataset(client: ParetoClient, name: str, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    header = datasets_pb2.DatasetHeader(
        name=name, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    messages = [
        datasets_pb2.UploadDatasetRequest(header=header),
        datasets_pb2.UploadDatasetRequest(chunk=data),
    ]
    client.datasets.UploadDataset(iter(messages))


def upload_digits(client: ParetoClient, digits_model: BuiltModel) -> np.ndarray:
    """Uploads the digits CNN as "digits" and its held-out set as dataset "digits-test";
    returns the held-out pixels."""
    client.upload(digits_model.path, "digits")
    x = digits_model.X_test.astype(np.float32)
    upload_dataset(client, "digits-test", pixels=x, labels=digits_model.y_test)
    return x


def pid_of(pid_file: Path, timeout_s: float = 60.0) -> int:
    pid = wait_for(lambda: pid_file.is_file() and pid_file.read_text(), "the worker pid", timeout_s)
    return int(pid)


def is_gone(pid: int) -> bool:
    """No such process, or only a zombie waiting for its (new) parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def infer_digits(triton: tc.InferenceServerClient, x: np.ndarray, **kw: str) -> np.ndarray:
    model = kw.pop("model", "digits")
    tensor = tc.InferInput("pixels", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return triton.infer(model, [tensor], **kw).as_numpy("logits")
