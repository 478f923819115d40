"""pareto_model_memory_bytes is measured (in a child process), not guessed."""

from __future__ import annotations

import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def memory_samples(port: int) -> list:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    families = {f.name: f for f in text_string_to_metric_families(body)}
    return [s for s in families["pareto_model_memory_bytes"].samples if s.labels["model"] == "mem"]


def test_memory_gauge_appears_after_load(gateway, client, triton, minilm_model):
    client.upload(minilm_model.path, "mem")
    triton.load_model("mem")
    deadline = time.monotonic() + 120
    while not memory_samples(gateway.metrics_port) and time.monotonic() < deadline:
        time.sleep(0.2)
    (sample,) = memory_samples(gateway.metrics_port)
    # MiniLM's fp32 weights alone are ~90 MB; a loaded session holds at least that.
    assert sample.value > 50e6
