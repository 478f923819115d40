"""KServe ModelServer (kserve==0.21, its own venv) serving ONNX files with ONNX Runtime.

    python kserve_server.py --http-port P --grpc-port Q --threads 1 NAME=PATH [NAME=PATH ...]

A custom `kserve.Model` as KServe's documentation writes them: `predict` runs the ONNX
Runtime session on the request's tensors (CPUExecutionProvider, the same thread settings
as the other sides) and returns KServe v2 outputs. Run with the kserve venv's python.
"""

from __future__ import annotations

import argparse

import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer


class OrtModel(Model):
    def __init__(self, name: str, path: str, threads: int) -> None:
        super().__init__(name)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.ready = True

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        feeds = {tensor.name: tensor.as_numpy() for tensor in payload.inputs}
        values = self.session.run(self.outputs, feeds)
        outputs = []
        for name, value in zip(self.outputs, values, strict=True):
            output = InferOutput(name=name, shape=list(value.shape), datatype="FP32")
            output.set_data_from_numpy(value, binary_data=False)
            outputs.append(output)
        # A REST request without an id has payload.id None, which InferResponse refuses.
        response_id = payload.id or ""
        return InferResponse(model_name=self.name, infer_outputs=outputs, response_id=response_id)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("models", nargs="+", help="NAME=PATH")
    args = parser.parse_args()
    models = [OrtModel(*item.split("=", 1), args.threads) for item in args.models]
    ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, workers=1).start(models)


if __name__ == "__main__":
    main()
