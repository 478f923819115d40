"""TensorRT engine execution: device buffers allocated once and reused, one CUDA stream
per session. Needs `tensorrt`, `cuda-python` and a GPU.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from pareto_core.errors import FailedPrecondition
from pareto_core.tensors import NUMPY_TO_KSERVE, Signature, TensorSpec
from runtimes.base import Session
from runtimes.tensorrt_plan import Profile, check_in_profile


def check_cuda(call_result: tuple[Any, ...]) -> Any:
    """cuda-python returns (error, *values): raise on error, return the value(s)."""
    from cuda.bindings import runtime as cudart

    error, *values = call_result
    if error != cudart.cudaError_t.cudaSuccess:
        raise FailedPrecondition(f"CUDA call failed: {cudart.cudaGetErrorString(error)[1]}")
    return values[0] if len(values) == 1 else values


class TensorRtSession(Session):
    def __init__(self, engine_path: Path, profile: Profile, device_id: int, logger: Any) -> None:
        import tensorrt as trt
        from cuda.bindings import runtime as cudart

        self._cudart, self._check = cudart, check_cuda
        check_cuda(cudart.cudaSetDevice(device_id))
        self._runtime = trt.Runtime(logger)
        self._engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self._engine is None:
            raise FailedPrecondition(f"TensorRT cannot deserialize {engine_path} on this GPU")
        self._context = self._engine.create_execution_context()
        self.profile = profile
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        is_input = {n: self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self._inputs = [n for n in names if is_input[n]]
        self._outputs = [n for n in names if not is_input[n]]
        self._dtypes = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in names}
        self._stream = check_cuda(cudart.cudaStreamCreate())
        self._buffers = self._allocate()
        self._lock = threading.Lock()
        self.signature = Signature(
            tuple(self._spec(n, profile.ranges[n][2]) for n in self._inputs),
            tuple(self._spec(n, self._context.get_tensor_shape(n)) for n in self._outputs),
        )

    def _spec(self, name: str, shape: Any) -> TensorSpec:
        dims = tuple(int(d) for d in shape)
        return TensorSpec(name, NUMPY_TO_KSERVE[self._dtypes[name]], (-1, *dims[1:]))

    def _allocate(self) -> dict[str, tuple[int, int]]:
        """Device buffers (pointer, bytes) sized for the profile's largest shapes: set every
        input to its max shape, then the outputs' shapes are their largest too."""
        for name in self._inputs:
            self._context.set_input_shape(name, self.profile.ranges[name][2])
        buffers = {}
        for name in self._inputs + self._outputs:
            shape = tuple(self._context.get_tensor_shape(name))
            nbytes = max(1, int(np.prod(shape)) * self._dtypes[name].itemsize)
            pointer = self._check(self._cudart.cudaMalloc(nbytes))
            buffers[name] = (int(pointer), nbytes)
            self._context.set_tensor_address(name, int(pointer))
        return buffers

    def run(
        self, inputs: dict[str, np.ndarray], output_names: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        check_in_profile({n: inputs[n].shape for n in self._inputs}, self.profile)
        cudart, check = self._cudart, self._check
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        with self._lock:
            if self._context is None:
                raise FailedPrecondition("tensorrt_gpu session is closed")
            hosts = {}
            for name in self._inputs:
                host = np.ascontiguousarray(inputs[name], dtype=self._dtypes[name])
                hosts[name] = host  # kept alive until the stream is synchronized
                self._context.set_input_shape(name, host.shape)
                pointer = self._buffers[name][0]
                check(
                    cudart.cudaMemcpyAsync(
                        pointer, host.ctypes.data, host.nbytes, h2d, self._stream
                    )
                )
            if not self._context.execute_async_v3(int(self._stream)):  # TRT takes the handle
                raise FailedPrecondition("TensorRT failed to enqueue the inference")
            results = {}
            for name in output_names or self._outputs:
                shape = tuple(self._context.get_tensor_shape(name))
                out = np.empty(shape, dtype=self._dtypes[name])
                check(
                    cudart.cudaMemcpyAsync(
                        out.ctypes.data, self._buffers[name][0], out.nbytes, d2h, self._stream
                    )
                )
                results[name] = out
            check(cudart.cudaStreamSynchronize(self._stream))
        return results

    def close(self) -> None:
        with self._lock:
            if self._context is None:
                return
            for pointer, _ in self._buffers.values():
                self._cudart.cudaFree(pointer)
            self._cudart.cudaStreamDestroy(self._stream)
            self._context = self._engine = self._runtime = None
