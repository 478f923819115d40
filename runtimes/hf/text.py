"""Text in: strings tokenized with the model's own tokenizer, as the gateway serves them.

A model uploaded with a `tokenizer.json` also takes a BYTES input `text` (one UTF-8 string
per row). `TextEncoder` turns such a batch into the token inputs the ONNX export takes:
`input_ids` and `attention_mask`, int64 [rows, longest], padded with the tokenizer's pad
token, truncated to the model's limit (`TextSettings.max_tokens`: sentence-transformers'
`max_seq_length` where the folder has one, else the tokenizer's and the position table's
limit). Only the `tokenizers` library runs here (no transformers, no torch): the gateway
process tokenizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pareto_core.errors import InvalidArgument

TEXT_INPUT = "text"
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
TOKEN_INPUTS = (INPUT_IDS, ATTENTION_MASK)
DEFAULT_MAX_TEXT_BYTES = 64 * 1024


@dataclass(frozen=True)
class TextSettings:
    """How strings become tokens for one model (kept with its record as JSON)."""

    max_tokens: int
    pad_id: int
    pad_token: str
    lowercase: bool = False  # sentence-transformers' do_lower_case, applied before tokenizing

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TextSettings:
        return cls(
            int(data["max_tokens"]),
            int(data["pad_id"]),
            str(data["pad_token"]),
            bool(data.get("lowercase", False)),
        )


def load_tokenizer(tokenizer_json: str) -> Any:
    """A `tokenizers.Tokenizer` from the text of a tokenizer.json; InvalidArgument saying
    why when the library cannot load it."""
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_str(tokenizer_json)
    except Exception as exc:  # the library raises plain Exceptions with its parser's message
        reason = str(exc).strip()[:300] or type(exc).__name__
        raise InvalidArgument(f"tokenizer.json cannot be loaded by tokenizers: {reason}") from None


class TextEncoder:
    """Strings -> token inputs for one model. Thread-safe once built (encoding only reads)."""

    def __init__(self, tokenizer_json: str, settings: TextSettings) -> None:
        self.settings = settings
        self._tokenizer = load_tokenizer(tokenizer_json)
        self._tokenizer.enable_truncation(max_length=settings.max_tokens)
        self._tokenizer.enable_padding(pad_id=settings.pad_id, pad_token=settings.pad_token)

    def encode(
        self, values: Sequence[object], max_bytes: int, name: str = TEXT_INPUT
    ) -> dict[str, np.ndarray]:
        """`values` (str or UTF-8 bytes, one per row) as {input_ids, attention_mask}."""
        texts = decode_texts(values, max_bytes, name, self.settings.max_tokens)
        if self.settings.lowercase:
            texts = [text.lower() for text in texts]
        encodings = self._tokenizer.encode_batch(texts)
        return {
            INPUT_IDS: np.array([e.ids for e in encodings], dtype=np.int64),
            ATTENTION_MASK: np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }


def decode_texts(values: Sequence[object], max_bytes: int, name: str, max_tokens: int) -> list[str]:
    """The rows as str: InvalidArgument for no rows, a row that is not UTF-8, or one over
    `max_bytes` bytes (naming the input, the row and the limit)."""
    if len(values) == 0:
        raise InvalidArgument(f"input {name!r} has no rows; send one string per row")
    texts = []
    for row, value in enumerate(values):
        if isinstance(value, str):
            data = value.encode("utf-8", "surrogatepass")
        elif isinstance(value, bytes):
            data = value
        else:
            raise InvalidArgument(f"input {name!r} row {row} is not a string")
        if len(data) > max_bytes:
            raise InvalidArgument(
                f"input {name!r} row {row} is {len(data)} bytes, over the limit of {max_bytes} "
                f"bytes per string; the model reads at most its first "
                f"{max_tokens} tokens"
            )
        try:
            texts.append(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InvalidArgument(
                f"input {name!r} row {row} is not valid UTF-8 (byte {exc.start}: {exc.reason})"
            ) from None
    return texts
