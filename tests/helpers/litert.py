"""The LiteRT converter venv (`make install` builds it) that edgetpu_tflite needs."""

from __future__ import annotations

import pytest

from runtimes.edgetpu_tflite import litert_python

needs_litert = pytest.mark.skipif(
    not litert_python().is_file(), reason="LiteRT converter venv missing: run make install"
)
