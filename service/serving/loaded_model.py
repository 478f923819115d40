"""A loaded model: its session, how it is served (config, batcher), who holds it; and
the warm-up that runs when it loads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pareto_core.tensors import Signature
from runtimes.base import Runtime, Session
from service.metrics import ModelMeters
from service.serving.batcher import Batcher, Inputs, Timing
from service.serving.config import DEFAULT, ServingConfig, WarmupConfig
from service.serving.servables import Servable
from service.serving.targets import Target


@dataclass
class LoadedModel:
    target: Target
    runtime: Runtime
    session: Session
    model_path: Path
    options: dict[str, Any]
    config: ServingConfig = DEFAULT
    batcher: Batcher | None = None
    on_run: Callable[[int, float, float, float], None] = lambda rows, p, r, s: None
    in_flight: int = 0
    draining: bool = False
    idle: threading.Condition = field(default_factory=threading.Condition)
    meters: ModelMeters = field(init=False)
    # runtimes.hf.text.TextEncoder when the model takes text (its signature's `text`)
    text_encoder: Any = None

    def __post_init__(self) -> None:
        self.meters = ModelMeters(self.labels)

    def run(
        self,
        inputs: Inputs,
        wanted: list[str] | None,
        deadline: float | None = None,
        on_start: Callable[[], None] = lambda: None,
    ) -> tuple[dict[str, np.ndarray], Timing]:
        """Run one request: in a batch when the model batches, else alone; `on_start`
        when its run begins."""
        batcher = self.batcher
        if batcher is not None:
            return batcher.submit(inputs, wanted, deadline, on_start)
        on_start()
        started = time.perf_counter()
        outputs = self.session.run(inputs, wanted)
        seconds = time.perf_counter() - started
        rows = _rows(inputs)
        self.on_run(rows, 0.0, seconds, 0.0)
        return outputs, Timing(started, 0.0, seconds, 0.0, rows)

    @property
    def servable(self) -> Servable:
        return self.target.servable

    @property
    def labels(self) -> tuple[str, str, str]:
        """(model, variant, runtime) metric labels."""
        return (self.servable.model, self.servable.variant_label, self.runtime.name)

    @property
    def signature(self) -> Signature:
        return self.servable.signature


def warm_up(session: Session, config: WarmupConfig) -> None:
    """Run the model `config.runs` times per batch size on zeros (dynamic non-batch dims
    from `config.dims`, else 1), so the first request does not pay for first runs."""
    for batch in config.batch_sizes:
        inputs = {}
        for spec in session.signature.inputs:
            dims = iter(config.dims.get(spec.name, ()))
            shape = [batch if i == 0 and d == -1 else d for i, d in enumerate(spec.shape)]
            shape = [next(dims, 1) if d == -1 else d for d in shape]
            inputs[spec.name] = np.zeros(shape, dtype=spec.numpy_dtype)
        for _ in range(config.runs):
            session.run(inputs)


def _rows(inputs: Inputs) -> int:
    return int(next(iter(inputs.values())).shape[0]) if inputs else 0
