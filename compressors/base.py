"""The technique interface and what a technique gets to work with.

A technique is a frozen pydantic config plus a `Technique` subclass registered by name
(see `compressors.registry`). Technique modules import heavy libraries (torch,
onnxruntime.quantization, ...) inside functions only: the server imports every technique
module to validate recipes at CreateJob time and must stay free of torch.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from pareto_core.formats import FORMAT_ONNX
from pareto_core.tensors import Signature

# Dataset roles a job may name.
ROLE_CALIBRATION = "calibration"
ROLE_TRAINING = "training"
ROLE_EVALUATION = "evaluation"
ROLES = (ROLE_CALIBRATION, ROLE_TRAINING, ROLE_EVALUATION)
# The dataset a job measures quality on: the first of these roles it names.
EVALUATION_ROLES = (ROLE_EVALUATION, ROLE_CALIBRATION, ROLE_TRAINING)


class TechniqueConfig(BaseModel):
    """Base of every technique config: frozen, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class TorchSource:
    """The torch source of an uploaded model: its Hugging Face folder (unpacked, read-only;
    only the files Pareto checked at upload) and the task it was exported for. A technique
    builds the torch module with `compressors.training.hf_source.load_task_model(path, task)`."""

    path: Path
    task: str


@dataclass(frozen=True)
class Artifact:
    """A model file between steps: a single-file ONNX model or a torch.export archive."""

    path: Path
    format: str
    signature: Signature
    # Set on the uploaded model's artifact (`StepContext.parent`, and the first step's
    # input) when it was uploaded as a Hugging Face folder: the same model in torch. A
    # step's output never has one (it is another model).
    torch_source: TorchSource | None = None


@dataclass(frozen=True)
class Dataset:
    """Named input arrays (first axis = samples) and optional labels, from a .npz file."""

    name: str
    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None

    @property
    def num_samples(self) -> int:
        return len(next(iter(self.inputs.values())))


ProgressFn = Callable[[float, str, dict[str, float]], None]


@dataclass
class StepContext:
    """What a technique may use besides its input artifact and config."""

    work_dir: Path
    parent: Artifact
    datasets: dict[str, Dataset] = field(default_factory=dict)
    # fraction 0..1 of this step, a message, partial metrics (loss, accuracy, ...)
    progress: ProgressFn = lambda fraction, message, metrics: None
    is_cancelled: Callable[[], bool] = lambda: False
    threads: int = 1
    seed: int = 0
    # Budget of the job, for techniques that search (quantize.accuracy_aware).
    quality_budget: dict[str, Any] = field(default_factory=dict)
    # Training techniques: where this step's checkpoints live (None: no checkpoints), and
    # uploaded models by name (teachers, students), latest version.
    checkpoint_dir: Path | None = None
    models: Callable[[str], Artifact] | None = None
    # The torch source of the job's model when it has one: the Hugging Face folder it was
    # uploaded as (prune.transformer starts from it). None: the model has no torch source.
    source_dir: Path | None = None

    def model(self, name: str, technique: str) -> Artifact:
        """The uploaded model `name` as an artifact (NotFound when there is none)."""
        from pareto_core.errors import FailedPrecondition

        if self.models is None:
            raise FailedPrecondition(f"{technique} cannot look up model {name!r} here")
        return self.models(name)

    def dataset(self, role: str, technique: str) -> Dataset:
        """The dataset for `role`, or FailedPrecondition naming the technique and role."""
        from pareto_core.errors import FailedPrecondition

        if role not in self.datasets:
            raise FailedPrecondition(
                f"{technique} needs a {role!r} dataset; pass datasets={{{role!r}: NAME}}"
            )
        return self.datasets[role]


@dataclass(frozen=True)
class StepResult:
    artifact: Artifact
    # JSON-serializable report of what the step did (kept with the variant).
    report: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelInfo:
    """An uploaded model as CreateJob sees it (format: the artifact format)."""

    name: str
    version: int
    format: str
    signature: Signature
    # The format of the model's torch source ("hf_folder": uploaded as a Hugging Face
    # folder), "" when it has none.
    source_format: str = ""


@dataclass(frozen=True)
class JobInfo:
    """What CreateJob knows besides a step's config, for `Technique.check_job`."""

    model: ModelInfo
    # role -> (dataset name, whether it has labels)
    datasets: dict[str, tuple[str, bool]]
    # an uploaded model by name (raises NotFound when there is none)
    find_model: Callable[[str], ModelInfo]


class Technique(abc.ABC):
    """One compression technique. Subclasses set the class attributes and `apply`."""

    name: ClassVar[str]
    config_cls: ClassVar[type[TechniqueConfig]]
    # Artifact formats `apply` accepts; anything else is FAILED_PRECONDITION.
    input_formats: ClassVar[frozenset[str]] = frozenset({FORMAT_ONNX})
    description: ClassVar[str] = ""

    def check_job(self, config: TechniqueConfig, job: JobInfo, where: str) -> None:
        """Checks at CreateJob that need more than the config (models it names, datasets):
        raise InvalidArgument / NotFound / FailedPrecondition naming `where`. Default: none."""
        return None

    @abc.abstractmethod
    def apply(self, artifact: Artifact, config: TechniqueConfig, ctx: StepContext) -> StepResult:
        """Produce a new artifact in ctx.work_dir. Never modify `artifact.path`.

        Raise pareto_core.errors.FailedPrecondition when the technique cannot apply to this
        model (saying why), InvalidArgument for a config that is wrong for this model.
        """
