"""Test-only techniques, loaded as a plug-in (PARETO_EXTRA_TECHNIQUE_MODULES=
`tests.helpers.job_techniques`).

They exercise the job runtime without the cost of real compression: `test.scale` makes a
real, different ONNX model (every float initializer times `factor`); `test.slow` takes a
while, reports progress and honours cancellation; `test.allocate` asks for more memory than
a job may have; `test.torch_only` accepts torch.export models only.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import Field

from compressors.base import Artifact, StepContext, StepResult, Technique, TechniqueConfig
from compressors.registry import register
from pareto_core.errors import Cancelled
from pareto_core.formats import FORMAT_TORCH_EXPORT


def scaled_copy(artifact: Artifact, factor: float, out: Path) -> Artifact:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(artifact.path))
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype == np.float32:
            init.CopyFrom(numpy_helper.from_array(array * np.float32(factor), init.name))
    onnx.save(model, str(out))
    return Artifact(out, artifact.format, artifact.signature)


class ScaleConfig(TechniqueConfig):
    factor: float = Field(1.0, gt=0, le=10)


@register
class Scale(Technique):
    name = "test.scale"
    config_cls = ScaleConfig
    description = "Multiply every float initializer by `factor` (1.0 = an exact copy)."

    def apply(self, artifact: Artifact, config: ScaleConfig, ctx: StepContext) -> StepResult:
        out = scaled_copy(artifact, config.factor, ctx.work_dir / "scaled.onnx")
        return StepResult(out, {"factor": config.factor})


class SlowConfig(TechniqueConfig):
    seconds: float = Field(1.0, ge=0, le=600)
    pid_file: str = ""  # where to write the worker's pid, for tests that kill it


@register
class Slow(Technique):
    name = "test.slow"
    config_cls = SlowConfig
    description = "Sleep `seconds` in small slices, reporting progress, then copy the model."

    def apply(self, artifact: Artifact, config: SlowConfig, ctx: StepContext) -> StepResult:
        if config.pid_file:
            Path(config.pid_file).write_text(str(os.getpid()))
        deadline = time.monotonic() + config.seconds
        while (left := deadline - time.monotonic()) > 0:
            if ctx.is_cancelled():
                raise Cancelled("test.slow cancelled")
            ctx.progress(1 - left / max(config.seconds, 1e-9), "sleeping", {"left_s": left})
            time.sleep(min(0.05, left))
        return StepResult(scaled_copy(artifact, 1.0, ctx.work_dir / "copy.onnx"))


class AllocateConfig(TechniqueConfig):
    gib: float = Field(1.0, gt=0, le=1024)


@register
class Allocate(Technique):
    name = "test.allocate"
    config_cls = AllocateConfig
    description = "Allocate `gib` GiB at once (to hit the job memory limit)."

    def apply(self, artifact: Artifact, config: AllocateConfig, ctx: StepContext) -> StepResult:
        import numpy as np

        block = np.ones(int(config.gib * 1024**3), dtype=np.uint8)
        return StepResult(artifact, {"allocated": int(block.sum())})


class NoConfig(TechniqueConfig):
    pass


@register
class TorchOnly(Technique):
    name = "test.torch_only"
    config_cls = NoConfig
    input_formats = frozenset({FORMAT_TORCH_EXPORT})
    description = "Accepts torch.export models only (for format checks)."

    def apply(self, artifact: Artifact, config: NoConfig, ctx: StepContext) -> StepResult:
        raise AssertionError("never applied in the tests")
