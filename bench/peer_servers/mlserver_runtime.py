"""Seldon MLServer (mlserver==1.7.1, its own venv): a custom runtime serving an ONNX file
with ONNX Runtime, as MLServer's documentation writes custom runtimes. Configured by
bench/peers.py with settings.json and a model-settings.json per model
(`parameters.uri` = the ONNX file, `parameters.extra.threads`)."""

from __future__ import annotations

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OrtRuntime(MLModel):
    async def load(self) -> bool:
        threads = int((self.settings.parameters.extra or {}).get("threads", 1))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        uri = self.settings.parameters.uri
        self.session = ort.InferenceSession(uri, options, providers=["CPUExecutionProvider"])
        self._output_names = [o.name for o in self.session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {item.name: NumpyCodec.decode_input(item) for item in payload.inputs}
        values = self.session.run(self._output_names, feeds)
        outputs = [
            NumpyCodec.encode_output(name, value)
            for name, value in zip(self._output_names, values, strict=True)
        ]
        return InferenceResponse(model_name=self.name, outputs=outputs, id=payload.id)
