"""A `.safetensors` file's header, checked before anything loads the file.

The format is an 8-byte little-endian header length N, N bytes of JSON
(`{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`), then
the data. Offsets are relative to the data; each tensor must take exactly
prod(shape) * itemsize bytes, inside the file, and the tensors must tile the data without
overlap or gap (as the safetensors library itself requires when it loads the file).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from pareto_core.errors import InvalidArgument

DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "U16": 2,
    "I16": 2,
    "F16": 2,
    "BF16": 2,
    "U32": 4,
    "I32": 4,
    "F32": 4,
    "U64": 8,
    "I64": 8,
    "F64": 8,
}
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_TENSORS = 100_000
_METADATA = "__metadata__"


def check_safetensors(path: Path, name: str) -> int:
    """The number of parameters (elements) in the file at `path`, shown to users as `name`;
    InvalidArgument naming the file and the tensor when the header is not sound."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise InvalidArgument(f"{name}: {size} bytes, too short for a safetensors header")
        (length,) = struct.unpack("<Q", head)
        if length < 2 or length > min(MAX_HEADER_BYTES, size - 8):
            raise InvalidArgument(
                f"{name}: header length {length} is not within 2..{min(MAX_HEADER_BYTES, size - 8)}"
                " (the file's size, at most 16 MiB)"
            )
        text = f.read(length)
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(f"{name}: the header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise InvalidArgument(f"{name}: the header is not a JSON object")
    _check_metadata(header.pop(_METADATA, {}), name)
    if len(header) > MAX_TENSORS:
        raise InvalidArgument(f"{name}: {len(header)} tensors, more than {MAX_TENSORS}")
    spans = sorted(_span(key, entry, name) for key, entry in header.items())
    _check_tiling(spans, size - 8 - length, name)
    return sum(elements for _, _, elements, _ in spans)


def _check_metadata(metadata: Any, name: str) -> None:
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise InvalidArgument(f"{name}: __metadata__ must map strings to strings")


def _span(key: str, entry: Any, name: str) -> tuple[int, int, int, str]:
    """(begin, end, elements, tensor name) of one header entry, its fields checked."""
    where = f"{name}: tensor {key[:200]!r}"
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise InvalidArgument(f"{where} must have exactly dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPE_BYTES:
        raise InvalidArgument(f"{where}: dtype {str(dtype)[:20]!r} is not a safetensors dtype")
    if not isinstance(shape, list) or not all(_natural(d) for d in shape):
        raise InvalidArgument(f"{where}: shape must be a list of non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_natural, offsets))):
        raise InvalidArgument(f"{where}: data_offsets must be two non-negative integers")
    begin, end = offsets
    elements = math.prod(shape)
    if end - begin != elements * DTYPE_BYTES[dtype]:
        raise InvalidArgument(
            f"{where}: {dtype}{shape} needs {elements * DTYPE_BYTES[dtype]} bytes, its "
            f"data_offsets [{begin}, {end}] hold {end - begin}"
        )
    return begin, end, elements, key


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_tiling(spans: list[tuple[int, int, int, str]], data_bytes: int, name: str) -> None:
    position = 0
    for begin, end, _, key in spans:
        if begin != position:
            what = "overlaps the previous tensor" if begin < position else "leaves a gap before it"
            raise InvalidArgument(
                f"{name}: tensor {key[:200]!r} starts at data byte {begin}, the previous one "
                f"ends at {position}: it {what}"
            )
        if end > data_bytes:
            raise InvalidArgument(
                f"{name}: tensor {key[:200]!r} ends at data byte {end}, past the end of the "
                f"file's {data_bytes} data bytes"
            )
        position = end
    if position != data_bytes:
        raise InvalidArgument(
            f"{name}: the tensors end at data byte {position}, the file has {data_bytes}"
        )
