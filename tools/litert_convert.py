"""Convert an ONNX or torch.export (.pt2) model to a full-integer int8 .tflite.

Runs ONLY in the LiteRT virtualenv (`.venv/litert`, made by `make install`): litert-torch
pins a pydantic the gateway cannot use, so the gateway calls this file as a subprocess:

    .venv/litert/bin/python tools/litert_convert.py --model M --format onnx|torch_export \
        --calibration calib.npz --out model.tflite [--samples 200]

Steps: ONNX -> torch (onnx2torch) or .pt2 -> torch (`runtimes.pt2_inspect.load_restricted`,
never a plain `torch.export.load`); `torch.export` at batch 1; PT2E static int8 (weights
per-channel, activations per-tensor) calibrated on the dataset's first `--samples` rows (the
representative dataset); `litert_torch.convert` to .tflite. Prints one JSON line: the
model's input and output names (in the .tflite's order), the operators of the result and
how many of them compute in int8, or {"error": ...} (exit 1).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# Operators that only move between float and int8 at the model's edges.
EDGE_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})


def load_module(path: Path, fmt: str) -> tuple[object, list[str], list[str]]:
    """(torch module, input names, output names) of the model at `path`."""
    if fmt == "onnx":
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
        initializers = {i.name for i in graph.initializer}
        inputs = [i.name for i in graph.input if i.name not in initializers]
        outputs = [o.name for o in graph.output]
        return _onnx2torch().convert(str(path)).eval(), inputs, outputs
    if fmt == "torch_export":
        sys.path.insert(0, str(ROOT))
        from runtimes.pt2_inspect import load_restricted, signature_json

        program = load_restricted(path)
        names = signature_json(program)
        inputs = [t["name"] for t in names["inputs"]]
        outputs = [t["name"] for t in names["outputs"]]
        return program.module(), inputs, outputs
    raise ValueError(f"cannot convert model format {fmt!r}: expected onnx or torch_export")


def _onnx2torch():
    """onnx2torch imports torchvision for two detection ops only (NMS, RoiAlign); this venv
    has no torchvision, so a stand-in that refuses those ops is used during the import
    (as compressors/torch_bridge.py does in the gateway's venv)."""
    import types

    def unavailable(*_args, **_kwargs):
        raise ValueError("this operator needs torchvision, which is not installed")

    standin, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    ops.nms = ops.roi_align = ops.box_convert = unavailable
    standin.ops = ops
    sys.modules.update({"torchvision": standin, "torchvision.ops": ops})
    try:
        import onnx2torch
    finally:
        for name in ("torchvision", "torchvision.ops"):
            sys.modules.pop(name, None)
    return onnx2torch


def calibration_rows(npz: Path, names: list[str], samples: int) -> list[tuple[np.ndarray, ...]]:
    with np.load(npz, allow_pickle=False) as data:
        missing = [n for n in names if n not in data.files]
        if missing:
            raise ValueError(f"calibration dataset has no array {missing}; it has {data.files}")
        arrays = [data[n] for n in names]
    count = min(samples, len(arrays[0]))
    return [tuple(a[i : i + 1] for a in arrays) for i in range(count)]


def quantize(module, rows: list[tuple[np.ndarray, ...]]):
    import torch
    from litert_torch.quantize import pt2e_quantizer as pq
    from torchao.quantization.pt2e import quantize_pt2e

    sample = tuple(torch.from_numpy(a) for a in rows[0])
    exported = torch.export.export(module, sample).module()
    quantizer = pq.PT2EQuantizer().set_global(
        pq.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    )
    prepared = quantize_pt2e.prepare_pt2e(exported, quantizer)
    with torch.no_grad():
        for row in rows:
            prepared(*(torch.from_numpy(a) for a in row))
    return quantize_pt2e.convert_pt2e(prepared, fold_quantize=False), quantizer, sample


def op_report(tflite: Path) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite))
    ops = [op["op_name"] for op in interpreter._get_ops_details()]
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    float_ops = []
    for op in interpreter._get_ops_details():
        if op["op_name"] in EDGE_OPS:
            continue
        dtypes = {details[i]["dtype"].__name__ for i in op["outputs"] if i in details}
        if dtypes & {"float32", "float16"}:
            float_ops.append(op["op_name"])
    return {"ops": ops, "float_ops": float_ops, "int8_ops": len(ops) - len(float_ops)}


def convert(args: argparse.Namespace) -> dict:
    import litert_torch
    from litert_torch.quantize.quant_config import QuantConfig

    module, inputs, outputs = load_module(args.model, args.format)
    rows = calibration_rows(args.calibration, inputs, args.samples)
    quantized, quantizer, sample = quantize(module, rows)
    edge = litert_torch.convert(
        quantized, sample, quant_config=QuantConfig(pt2e_quantizer=quantizer)
    )
    edge.export(str(args.out))
    return {
        "tflite": str(args.out),
        "inputs": inputs,
        "outputs": outputs,
        "calibration_samples": len(rows),
        **op_report(args.out),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--format", required=True)
    parser.add_argument("--calibration", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args(argv)
    try:
        result = convert(args)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
