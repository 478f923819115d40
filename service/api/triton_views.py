"""Triton's views of a served model: its ModelConfig and its ModelStatistics messages.

Tools written for Triton (perf_analyzer, Model Analyzer, dashboards) read these. The
config is built like the one `pareto export triton` writes (runtimes/triton_config.py),
with the model's dynamic batching; the statistics come from `service.serving.statistics`.
"""

from __future__ import annotations

from typing import Any

from tritonclient.grpc import service_pb2 as pb

from runtimes.options import host_cpus
from runtimes.triton_config import ExportSettings, build_config
from service.serving.config import ServingConfig
from service.serving.servables import Servable
from service.serving.statistics import BatchStats, Duration, ModelStats

# Triton's platform names for the runtimes that have one.
_PLATFORMS = {"onnxruntime_cpu": "onnxruntime_onnx", "tensorrt_gpu": "tensorrt_plan"}


def model_config(name: str, servable: Servable, runtime: str, config: ServingConfig) -> Any:
    """The `inference.ModelConfig` of `servable` served as `name` on `runtime`."""
    batching = config.batching_on(servable.signature)
    settings = ExportSettings(
        max_batch_size=config.batching.max_batch_size if batching else 0,
        preferred_batch_sizes=config.batching.preferred_batch_sizes,
        max_queue_delay_us=config.batching.max_queue_delay_us,
        instance_count=(config.batching.instances or host_cpus()) if batching else 1,
        tensorrt=False,
    )
    message = build_config(name, servable.signature, settings)
    message.platform = _PLATFORMS.get(runtime, runtime)
    if batching:
        message.dynamic_batching.default_queue_policy.max_queue_size = (
            config.batching.max_queue_size
        )
    if servable.signature.text is not None:
        _prepend_text(message, servable.signature.text.name, batching=message.max_batch_size > 0)
    message.parameters["pareto_sha256"].string_value = servable.sha256
    return message


def _prepend_text(message: Any, name: str, batching: bool) -> None:
    """List the gateway's text input first, as model metadata does: one string per row
    (TYPE_STRING, dims [1] reshaped to [] when batching, else [-1]). Only the served view
    has it; an exported Triton model does not tokenize, so `build_config` leaves it out."""
    inputs = list(message.input)
    del message.input[:]
    text = message.input.add(name=name, data_type="TYPE_STRING", dims=[1] if batching else [-1])
    if batching:
        text.reshape.SetInParent()
    message.input.extend(inputs)


def model_statistics(name: str, version: str, stats: ModelStats) -> pb.ModelStatistics:
    return pb.ModelStatistics(
        name=name,
        version=version,
        last_inference=stats.last_inference_ms,
        inference_count=stats.inference_count,
        execution_count=stats.execution_count,
        inference_stats=pb.InferStatistics(
            success=_duration(stats.success),
            fail=_duration(stats.fail),
            queue=_duration(stats.queue),
            compute_input=_duration(stats.compute_input),
            compute_infer=_duration(stats.compute_infer),
            compute_output=_duration(stats.compute_output),
        ),
        batch_stats=[_batch(size, batch) for size, batch in sorted(stats.batches.items())],
    )


def _duration(duration: Duration) -> pb.StatisticDuration:
    return pb.StatisticDuration(count=duration.count, ns=duration.ns)


def _batch(size: int, batch: BatchStats) -> pb.InferBatchStatistics:
    return pb.InferBatchStatistics(
        batch_size=size,
        compute_input=_duration(batch.compute_input),
        compute_infer=_duration(batch.compute_infer),
        compute_output=_duration(batch.compute_output),
    )
