"""The ground floor: protocol-free vocabulary shared by every other package.

Errors, model formats, tensor specs and signatures, and the ONNX signature reader. It
imports nothing of the project, nor grpc: `runtimes`, `compressors` and `service` all
build on it, and it can be used and tested alone.
"""
