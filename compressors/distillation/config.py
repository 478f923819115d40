"""The configuration of `distill.knowledge` (see `compressors.distillation.knowledge`)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, model_validator

from compressors.base import TechniqueConfig
from compressors.training.schedules import Schedule

NAME = "distill.knowledge"


class DistillConfig(TechniqueConfig):
    teacher: str = Field("", description="uploaded model name; empty = this step's input")
    student: str = Field("", description="uploaded .pt2 model; empty = derived from the input")
    width: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="derived student: channels kept (layers, from a torch source)",
    )
    init: Literal["teacher", "random"] = "teacher"
    objective: Literal["logits", "embedding"] = "logits"
    temperature: float = Field(4.0, gt=0.0, le=100.0)
    alpha: float = Field(0.9, ge=0.0, le=1.0, description="soft-target weight; 1-alpha: labels")
    labels: Literal["auto", "required", "ignore"] = "auto"
    embedding_loss: Literal["cosine", "mse"] = "cosine"
    mixup: float = Field(0.0, ge=0.0, le=10.0, description="Beta(a, a) of mixup; 0 = off")
    teacher_hidden: str = Field(
        "",
        description="a teacher ONNX tensor (e.g. its last hidden state) that the uploaded "
        "student's second output learns, by 1 - cosine per position",
    )
    hidden_weight: float = Field(0.0, ge=0.0, le=100.0, description="weight of that loss")
    epochs: int = Field(10, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1, le=65_536)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    schedule: Schedule = "cosine"
    warmup_steps: int = Field(0, ge=0, le=1_000_000)
    holdout_fraction: float = Field(0.1, ge=0.0, lt=0.9)
    patience: int = Field(0, ge=0, le=10_000, description="early stopping; 0 = off")
    max_samples: int = Field(0, ge=0, description="cap on training samples; 0 = all")

    @model_validator(mode="after")
    def _hidden_needs_its_parts(self) -> DistillConfig:
        if bool(self.teacher_hidden) != (self.hidden_weight > 0):
            raise ValueError("teacher_hidden and hidden_weight > 0 go together")
        if self.teacher_hidden and not self.student:
            raise ValueError("teacher_hidden needs an uploaded student whose 2nd output matches it")
        if self.teacher_hidden and self.mixup:
            raise ValueError("teacher_hidden and mixup cannot be combined")
        return self


def labels_needed(config: DistillConfig) -> str:
    """Why this config needs labels ('' when it does not)."""
    if config.labels == "required":
        return "config.labels is 'required'"
    if config.objective == "logits" and config.alpha == 0.0 and config.labels != "ignore":
        return "alpha 0 trains on the labels alone"
    return ""


def fingerprint(config: DistillConfig, extra: dict[str, Any]) -> str:
    """What a checkpoint was trained for: a resumed run must match it."""
    return json.dumps(
        {"technique": NAME, **config.model_dump(mode="json"), **extra}, sort_keys=True
    )
