"""Quantization and precision techniques, glue around ONNX Runtime's tooling.

* `quantize.dynamic` (dynamic.py): `onnxruntime.quantization.quantize_dynamic`, per-channel
  int8 weights, ORT's transformer optimizer first for transformers;
* `quantize.static` (static.py): `quantize_static`, QDQ int8 calibrated on a dataset
  (calibration.py reads it), after `quant_pre_process`;
* `quantize.accuracy_aware` (accuracy_aware.py, sensitivity.py): either of the above,
  keeping the most sensitive layers in float32 until the job's quality budget holds;
* `convert.fp16` (fp16.py): `onnxruntime.transformers.float16`.

Every module here imports onnx/onnxruntime inside functions only (calibration.py is the
exception and is itself imported inside `apply`).
"""
