"""Deterministic English sentences from the standard library's `pydoc_data.topics`.

The Python reference topics are plain English prose mixed with grammar rules and code
samples. We keep only prose paragraphs and bullets, split them into sentences, and keep
sentences of a reasonable length without code-like characters. The pool is the same on
every machine with the same Python minor version; `seed` picks a reproducible sample.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from functools import lru_cache

MIN_WORDS = 6
MAX_WORDS = 30
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_CODE_LIKE = re.compile(r"::|>>>|[{}=_`<>\\|#@$]|\*\*|\.\.\.")
_HEADING_RULE = re.compile(r"^[*=\-~^\"]{3,}$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _prose_block(lines: list[str]) -> str | None:
    """The block as one line if it is a prose paragraph or bullet, else None.

    Prose is flush at indentation 0 or 3 (method descriptions); a bullet is "* " with its
    continuation lines two columns further in. Deeper indentation is code or grammar.
    """
    first = _indent(lines[0])
    rest = {_indent(line) for line in lines[1:]}
    text = " ".join(line.strip() for line in lines)
    if first <= 3 and rest <= {first}:
        return text
    if lines[0].lstrip().startswith("* ") and rest <= {first + 2}:
        return text[2:]
    return None


def _prose_paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs that look like prose, each joined into one line."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line for line in block.splitlines() if line.strip()]
        if not lines or any(_HEADING_RULE.match(line.strip()) for line in lines):
            continue
        paragraph = _prose_block(lines)
        if paragraph is not None:
            paragraphs.append(paragraph)
    return paragraphs


def _is_good_sentence(sentence: str) -> bool:
    words = sentence.split()
    return (
        MIN_WORDS <= len(words) <= MAX_WORDS
        and sentence[0].isupper()
        and sentence.endswith(".")
        and not _CODE_LIKE.search(sentence)
        and sentence.count("(") == sentence.count(")")
    )


@lru_cache(maxsize=1)
def sentence_pool() -> tuple[str, ...]:
    """Every usable sentence, deduplicated, in a fixed order (sorted topics, text order)."""
    from pydoc_data.topics import topics

    seen: dict[str, None] = {}
    for key in sorted(topics):
        for paragraph in _prose_paragraphs(topics[key]):
            for sentence in _SENTENCE_END.split(paragraph):
                sentence = " ".join(sentence.split())
                if _is_good_sentence(sentence):
                    seen.setdefault(sentence, None)
    return tuple(seen)


def english_sentences(n: int, seed: int = 0) -> list[str]:
    """`n` distinct sentences sampled reproducibly from the pool with `seed`."""
    pool = sentence_pool()
    if not 0 <= n <= len(pool):
        raise ValueError(f"n: expected 0..{len(pool)} sentences, got {n}")
    return random.Random(seed).sample(pool, n)


def split_sentences(
    sentences: Sequence[str], test_fraction: float = 0.2, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Shuffle reproducibly and split into (train, held_out); held_out gets `test_fraction`."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: expected a value in (0, 1), got {test_fraction}")
    shuffled = list(sentences)
    random.Random(seed).shuffle(shuffled)
    n_test = max(1, round(len(shuffled) * test_fraction)) if shuffled else 0
    return shuffled[n_test:], shuffled[:n_test]
