"""What a job asks Ray for: CPUs, GPUs and memory of its actor, and of each trial of a
search.

* CPUs: PARETO_JOB_THREADS, the threads its torch and ONNX Runtime use.
* GPUs: 1 when its variants are measured on a CUDA runtime (`evaluation.runtime` is
  `tensorrt_gpu` or `torch_cuda`): the runtime's capabilities say so. Training steps
  (distillation, QAT, fine-tuning) run on CPU torch in Pareto's images, so they add none.
* Memory: PARETO_JOB_MEMORY_LIMIT_BYTES, as Ray's `memory` resource: the scheduler
  places the actor on a node with that much unreserved, and Ray's memory monitor kills
  the worker that uses the most when a node runs out (the run is lost, and retried).
* A search's own actor reserves nothing: its trials are Ray tasks with the resources
  above, and it mostly waits for them (it also measures the final frontier, on a CPU it
  shares). So `parallelism` trials fit wherever `parallelism` jobs would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.settings import Settings
from service.store.records import JobRecord

GPU_DEVICES = ("cuda",)


@dataclass(frozen=True)
class JobResources:
    num_cpus: float
    num_gpus: float
    memory: int  # bytes

    def ray_options(self) -> dict[str, Any]:
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus, "memory": self.memory}

    def describe(self) -> str:
        gpus = f", {self.num_gpus:g} GPU" if self.num_gpus else ""
        return f"{self.num_cpus:g} CPU{gpus}, {self.memory / 1024**3:.3g} GiB"


def needs_gpu(job: JobRecord) -> bool:
    from runtimes.registry import get_runtime

    runtime = str(job.evaluation.get("runtime") or "onnxruntime_cpu")
    devices = get_runtime(runtime).capabilities().devices
    return any(d in GPU_DEVICES for d in devices)


def run_resources(job: JobRecord, settings: Settings) -> JobResources:
    """One run of the job's work: a compression job's actor, or one trial of a search."""
    return JobResources(
        num_cpus=float(settings.job_threads),
        num_gpus=1.0 if needs_gpu(job) else 0.0,
        memory=settings.job_memory_limit_bytes,
    )


def actor_resources(job: JobRecord, settings: Settings, is_search: bool) -> JobResources:
    """The job's actor: a run's resources, or none for a search's (see above)."""
    return JobResources(0.0, 0.0, 0) if is_search else run_resources(job, settings)
