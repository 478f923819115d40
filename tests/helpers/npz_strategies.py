"""Hypothesis strategies for dataset archives: valid .npz files and malformed ones (cut,
bit-flipped, odd members, hand-written .npy headers with huge shapes, object dtypes,
unknown versions, broken header text), built as bytes without numpy's pickling paths."""

from __future__ import annotations

import io
import struct
import warnings
import zipfile

import numpy as np
from hypothesis import strategies as st

DTYPES = ["<f4", "<i8", "<f2", "|b1", "|u1", "<c8", "|O", "<M8[s]", "|S3", ">f4", "<V4"]
SHAPES = [(4, 4), (0, 4), (2**40, 4), (3,), (), (1, 2**31), (-1, 4), (2, 4, 1)]


def npz_bytes(arrays: dict[str, np.ndarray], compressed: bool = False) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def npy_member(descr: str, shape: object, data: bytes, version: int = 1, text: str = "") -> bytes:
    """A hand-written .npy: header dict (or raw `text`) and whatever data follows."""
    header = text or f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}, }}"
    raw = header.encode("latin-1", "replace") + b"\n"
    if version == 1:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(raw)) + raw + data
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I", len(raw)) + raw + data


def zip_of(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate member names are part of the fuzz
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


@st.composite
def valid_npz(draw: st.DrawFn) -> bytes:
    samples = draw(st.integers(0, 6))
    arrays = {
        "x": np.full((samples, 4), draw(st.floats(-1e3, 1e3)), np.float32),
        "n": np.ones((samples, 4), np.int64),
    }
    if draw(st.booleans()):
        arrays["labels"] = np.zeros(samples, np.int64)
    if draw(st.booleans()):
        arrays.pop(draw(st.sampled_from(sorted(arrays))))
    return npz_bytes(arrays, compressed=draw(st.booleans()))


@st.composite
def crafted_npz(draw: st.DrawFn) -> bytes:
    members = []
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(["x.npy", "n.npy", "labels.npy", "x", "../x.npy", ".npy"]))
        text = draw(st.one_of(st.just(""), st.text(max_size=60)))
        data = npy_member(
            draw(st.sampled_from(DTYPES)),
            draw(st.sampled_from(SHAPES)),
            draw(st.binary(max_size=128)),
            version=draw(st.sampled_from([1, 2, 3, 0])),
            text=text,
        )
        members.append((name, data))
    method = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    return zip_of(members, method)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    data = draw(base)
    if not data:
        return data
    kind = draw(st.sampled_from(["cut", "flip", "zip flags"]))
    if kind == "cut":
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "flip":
        i = draw(st.integers(0, len(data) - 1))
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
    # Set "encrypted" or an unknown compression method in the first local header.
    patched = bytearray(data)
    if patched[:4] == b"PK\x03\x04" and len(patched) > 10:
        if draw(st.booleans()):
            patched[6] |= 1
        else:
            patched[8:10] = struct.pack("<H", draw(st.sampled_from([1, 6, 12, 14, 99, 65535])))
    return bytes(patched)


def npz_payloads() -> st.SearchStrategy[bytes]:
    return st.one_of(
        valid_npz(),
        crafted_npz(),
        mutated(valid_npz()),
        mutated(crafted_npz()),
        st.sampled_from([b"", b"\x80\x04K\x01.", b"\x93NUMPY\x01\x00", b"PK\x05\x06" + bytes(18)]),
        st.binary(max_size=512),
    )
