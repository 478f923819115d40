"""Hugging Face model folders, read without torch: what the server needs of them.

* `safetensors_check`, `folder`: what an uploaded folder may hold and what it means (task,
  pooling, tokenizer settings), read with size limits, so the server refuses a bad folder
  before any helper process starts. Weights come only from `.safetensors` files; pickle
  files are refused, never read.
* `archive`: the folder as Pareto stores it (a tar of the files it reads) and single
  members read back from it.
* `text`: the gateway's tokenizer (the `tokenizers` library only), for text inputs.

The torch side (the folder as a torch module, its ONNX export and the check of that
export) is `compressors.training.hf_source` and `compressors.training.hf_export`.
"""
