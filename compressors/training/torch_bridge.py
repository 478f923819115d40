"""ONNX and torch.export archives to torch modules and back, for the techniques that train
or remove channels (prune.magnitude with fine-tuning, prune.structured).

* ONNX -> torch: onnx2torch builds a torch.fx GraphModule with real nn.Conv2d/nn.Linear
  modules (what torch-pruning's dependency graph needs). Ops it cannot convert are
  FAILED_PRECONDITION, listed by name, before any conversion work.
* .pt2 -> torch: `runtimes.pt2_inspect.load_restricted`, never `torch.export.load`, which
  is not safe on untrusted files (see that module).
* torch -> ONNX: the TorchScript exporter (dynamo=False, opset 17) with the parent's input
  and output names, its dynamic dims kept dynamic (dim 0 named "batch").

Importing this module does not import torch; every function does.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
import warnings
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from compressors.base import Artifact, Dataset
from compressors.graph.files import save_model
from pareto_core.errors import FailedPrecondition
from pareto_core.formats import FORMAT_ONNX
from pareto_core.tensors import Signature

OPSET = 17
# onnx2torch converters that call torchvision ops.
_TORCHVISION_OPS = frozenset({"NonMaxSuppression", "RoiAlign"})


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run torch with `threads` intra-op threads, restoring the previous number after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


# -- ONNX -> torch -------------------------------------------------------------------------


def _torchvision_usable() -> bool:
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
    except Exception:  # e.g. a CUDA build of torchvision next to the CPU torch
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        return False
    return True


@lru_cache(maxsize=1)
def _onnx2torch() -> tuple[Any, bool]:
    """(the onnx2torch module, whether its torchvision-based converters work).

    onnx2torch imports torchvision at import time for two converters only (NMS, RoiAlign).
    The torchvision wheels on PyPI are CUDA builds that do not load next to the CPU torch
    this project pins, so without a usable torchvision a stand-in is placed in sys.modules
    for the duration of the import only; models with those two ops are refused up front.
    """
    if _torchvision_usable():
        import onnx2torch

        return onnx2torch, True

    def unavailable(*_args: Any, **_kwargs: Any) -> Any:
        raise FailedPrecondition("this operator needs torchvision, which is not installed")

    standin, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    ops.nms = ops.roi_align = ops.box_convert = unavailable  # type: ignore[attr-defined]
    standin.ops = ops  # type: ignore[attr-defined]
    sys.modules.update({"torchvision": standin, "torchvision.ops": ops})
    try:
        import onnx2torch
    finally:
        for name in ("torchvision", "torchvision.ops"):
            sys.modules.pop(name, None)
    return onnx2torch, False


def unsupported_ops(model: Any) -> list[str]:
    """Op types of `model` that onnx2torch has no converter for (sorted, unique)."""
    _, with_torchvision = _onnx2torch()  # imports onnx2torch first (see there)
    from onnx2torch.node_converters.registry import get_converter

    opsets = {o.domain if o.domain != "ai.onnx" else "": o.version for o in model.opset_import}
    missing = set()
    for node in model.graph.node:
        domain = node.domain if node.domain != "ai.onnx" else ""
        label = f"{domain}.{node.op_type}" if domain else node.op_type
        if node.op_type in _TORCHVISION_OPS and not with_torchvision:
            missing.add(f"{label} (needs torchvision)")
            continue
        try:
            get_converter(node.op_type, opsets.get(domain, OPSET), domain)
        except NotImplementedError:
            missing.add(label)
    return sorted(missing)


def onnx_to_torch(path: Path, trainable: bool = True) -> Any:
    """The ONNX model at `path` as a torch.fx GraphModule (onnx2torch).

    With `trainable`, float initializers that onnx2torch keeps as buffers (e.g. MatMul
    weights) become parameters, so fine-tuning trains them too.
    """
    import onnx

    onnx2torch, _ = _onnx2torch()
    model = onnx.load(str(path))
    missing = unsupported_ops(model)
    if missing:
        raise FailedPrecondition(
            f"cannot convert the ONNX model to torch: onnx2torch has no converter for "
            f"{', '.join(missing)}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = onnx2torch.convert(model)
    except Exception as exc:  # onnx2torch raises plain exceptions for unsupported attributes
        raise FailedPrecondition(f"cannot convert the ONNX model to torch: {exc}") from exc
    if trainable:
        _initializers_to_parameters(module)
    return module


def _initializers_to_parameters(module: Any) -> None:
    import torch

    container = getattr(module, "initializers", None)
    if container is None:
        return
    for name, buffer in list(container.named_buffers(recurse=False)):
        if buffer.is_floating_point() and buffer.numel() > 1:
            delattr(container, name)
            container.register_parameter(name, torch.nn.Parameter(buffer.clone()))


# -- torch.export archives -----------------------------------------------------------------


@lru_cache(maxsize=1)
def _exported_module_class() -> type:
    import torch

    class ExportedModule(torch.nn.Module):
        """Wraps `ExportedProgram.module()`, which refuses train()/eval() in torch 2.13 (and
        the TorchScript exporter calls eval()). Only the flag is recorded: the exported
        graph keeps the behaviour it was exported with."""

        def __init__(self, program_module: torch.nn.Module) -> None:
            super().__init__()
            self.program = program_module

        def forward(self, *args: Any) -> Any:
            return self.program(*args)

        def train(self, mode: bool = True) -> ExportedModule:
            self.training = mode
            return self

    return ExportedModule


def pt2_to_torch(path: Path) -> Any:
    """A stored .pt2 (already checked at upload) as a trainable torch module."""
    from runtimes.pt2_inspect import ArchiveRejected, load_restricted

    try:
        program = load_restricted(Path(path))
    except ArchiveRejected as exc:
        raise FailedPrecondition(f"cannot load the torch.export archive: {exc}") from exc
    return _exported_module_class()(program.module())


def onnx_source(artifact: Artifact, work_dir: Path) -> Path:
    """An ONNX file of `artifact`: its own path, or a .pt2 exported to work_dir/source.onnx."""
    if artifact.format == FORMAT_ONNX:
        return Path(artifact.path)
    module = pt2_to_torch(artifact.path)
    example = example_inputs(artifact.signature)
    return torch_to_onnx(module, example, artifact.signature, work_dir / "source.onnx").path


# -- torch -> ONNX -------------------------------------------------------------------------


def example_inputs(
    signature: Signature, dataset: Dataset | None = None, batch: int = 2
) -> tuple[Any, ...]:
    """Tensors for tracing, in signature order: the dataset's first rows when it has the
    input, else zeros with dynamic dims set to `batch` (dim 0) or 8."""
    import torch

    tensors = []
    for spec in signature.inputs:
        if dataset is not None and spec.name in dataset.inputs:
            array = dataset.inputs[spec.name][:batch]
        else:
            shape = [(batch if i == 0 else 8) if d < 0 else d for i, d in enumerate(spec.shape)]
            array = np.zeros(shape, dtype=spec.numpy_dtype)
        tensors.append(torch.from_numpy(np.ascontiguousarray(array)))
    return tuple(tensors)


def _dim_names(name: str, shape: tuple[int, ...]) -> dict[int, str]:
    return {i: "batch" if i == 0 else f"{name}_dim{i}" for i, d in enumerate(shape) if d < 0}


def _declare_dims(model: Any, signature: Signature) -> None:
    """Set graph input/output dims as the parent declares them (the exporter names dynamic
    output dims after internal nodes and may leave static ones symbolic)."""
    specs = {t.name: t for t in (*signature.inputs, *signature.outputs)}
    for value in (*model.graph.input, *model.graph.output):
        spec = specs.get(value.name)
        dims = value.type.tensor_type.shape.dim
        if spec is None or len(dims) != len(spec.shape):
            continue
        names = _dim_names(spec.name, spec.shape)
        for i, (dim, size) in enumerate(zip(dims, spec.shape, strict=True)):
            if size >= 0 and dim.HasField("dim_value") and dim.dim_value != size:
                raise FailedPrecondition(
                    f"the exported model's {value.name!r} has dim {i} = {dim.dim_value}, "
                    f"the parent's has {size}"
                )
            dim.Clear()
            if size < 0:
                dim.dim_param = names[i]
            else:
                dim.dim_value = size


def torch_to_onnx(
    module: Any, example_inputs: tuple[Any, ...], signature: Signature, out_path: Path
) -> Artifact:
    """Export `module` to ONNX at `out_path` with `signature`'s IO names and dynamic dims."""
    import onnx
    import torch

    inputs = [t.name for t in signature.inputs]
    outputs = [t.name for t in signature.outputs]
    dynamic = {t.name: _dim_names(t.name, t.shape) for t in (*signature.inputs, *signature.outputs)}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(),
                tuple(example_inputs),
                str(out_path),
                dynamo=False,
                opset_version=OPSET,
                input_names=inputs,
                output_names=outputs,
                dynamic_axes={k: v for k, v in dynamic.items() if v},
            )
    except Exception as exc:
        raise FailedPrecondition(f"cannot export the torch model to ONNX: {exc}") from exc
    model = onnx.load(str(out_path))
    _declare_dims(model, signature)
    artifact = save_model(model, out_path)
    got = (
        [t.name for t in artifact.signature.inputs],
        [t.name for t in artifact.signature.outputs],
    )
    if got != (inputs, outputs):
        raise FailedPrecondition(
            f"the exported model has inputs {got[0]} and outputs {got[1]}, "
            f"expected inputs {inputs} and outputs {outputs} as the parent"
        )
    return artifact
