"""Students of `distill.knowledge`: an uploaded .pt2, or derived from the teacher.

* Uploaded: a torch.export archive, loaded with `runtimes.pt2_inspect.load_restricted`
  (never `torch.export.load`). Transformer students are made this way, because onnx2torch
  cannot convert transformer ONNX graphs (MiniLM's included): build the student in torch
  keeping every k-th layer of the teacher (DistilBERT style; `examples.models.
  export_minilm_student` does it for MiniLM), `torch.export` it and upload the .pt2.
* Derived (CNNs, MLPs: graphs onnx2torch converts): the teacher converted to torch with its
  channel widths scaled by `width`: torch-pruning removes the weakest (1 - width) of every
  prunable layer's channels, so the student starts from the teacher's strongest filters
  (`init: teacher`) or from fresh random weights of the same shape (`init: random`).

Trained students go back to ONNX: derived ones through the TorchScript exporter, .pt2 ones
re-exported with `torch.export` (dynamic dims kept) and the dynamo ONNX exporter.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

from compressors.base import Artifact
from pareto_core.errors import FailedPrecondition
from pareto_core.tensors import Signature

DYNAMO_OPSET = 18


def derive_student(
    teacher_onnx: Path,
    example: tuple[Any, ...],
    width: float,
    init: Literal["teacher", "random"],
    seed: int = 0,
) -> Any:
    """The teacher as a torch module with `width` of its channels (see the module doc)."""
    from compressors.pruning.structured import StructuredPruneConfig, prune_channels
    from compressors.training.torch_bridge import onnx_to_torch

    try:
        module = onnx_to_torch(teacher_onnx)
    except FailedPrecondition as exc:
        raise FailedPrecondition(
            f"cannot derive a student from this teacher ({exc}); upload a torch.export "
            "(.pt2) student and name it in config.student"
        ) from None
    if width < 1.0:
        prune_channels(module, example, StructuredPruneConfig(ratio=1.0 - width))
    if init == "random":
        import torch

        torch.manual_seed(seed)  # the same student for the same seed, whatever ran before
        for layer in module.modules():
            if hasattr(layer, "reset_parameters") and layer is not module:
                layer.reset_parameters()
    return module


def load_student(artifact: Artifact) -> Any:
    from compressors.training.torch_bridge import pt2_to_torch

    return pt2_to_torch(artifact.path)


def parameter_count(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def export_student(
    module: Any, example: tuple[Any, ...], signature: Signature, out: Path
) -> Artifact:
    """The trained student as ONNX with `signature`'s names and dynamic dims."""
    from compressors.training.torch_bridge import _exported_module_class, torch_to_onnx

    if isinstance(module, _exported_module_class()):
        return _export_dynamo(module.program, example, signature, out)
    return torch_to_onnx(module, example, signature, out)


def _export_dynamo(
    program: Any, example: tuple[Any, ...], signature: Signature, out: Path
) -> Artifact:
    """torch.export (dynamic dims as Dim.AUTO) -> the dynamo ONNX exporter. The TorchScript
    exporter would bake the example's sizes into a graph that came from torch.export."""
    import onnx
    import torch

    from compressors.graph.files import save_model
    from compressors.training.torch_bridge import _declare_dims

    dims = tuple(
        {i: torch.export.Dim.AUTO for i, d in enumerate(spec.shape) if d < 0}
        for spec in signature.inputs
    )
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            first = _first_output_class()(program)  # extra outputs only served training
            # forward(*args): the inputs are one tuple, so are their dynamic shapes
            exported = torch.export.export(first, tuple(example), dynamic_shapes=(dims,))
            onnx_program = torch.onnx.export(
                exported,
                dynamo=True,
                input_names=[t.name for t in signature.inputs],
                output_names=[t.name for t in signature.outputs],
                opset_version=DYNAMO_OPSET,
                verbose=False,
            )
            onnx_program.optimize()
            onnx_program.save(str(out))
    except Exception as exc:
        raise FailedPrecondition(f"cannot export the trained student to ONNX: {exc}") from exc
    model = onnx.load(str(out))
    _declare_dims(model, signature)
    return save_model(model, out)


def _first_output_class() -> type:
    import torch

    class FirstOutput(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> Any:
            out = self.inner(*args)
            return out[0] if isinstance(out, list | tuple) else out

    return FirstOutput
