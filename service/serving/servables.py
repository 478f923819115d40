"""What the data plane can serve: uploaded model versions and compressed variants.

A KServe v2 request names a model and optionally a version:
- `NAME` + "" (latest version), `NAME` + "3" (version 3): an uploaded model;
- `NAME` + "var-1a2b3c4d5e": variant var-1a2b3c4d5e of model NAME;
- `NAME.var-1a2b3c4d5e` + "": the same variant under its own name.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from pareto_core.errors import InvalidArgument, NotFound
from pareto_core.tensors import Signature
from service.store.interfaces import Repository
from service.store.records import ModelRecord, VariantRecord, with_text

DEFAULT_CACHE_S = 1.0
MAX_CACHED_NAMES = 4096

VARIANT_ID = re.compile(r"^var-[0-9a-f]{6,32}$")
VARIANT_SERVING_NAME = re.compile(r"^(?P<model>.+)\.(?P<variant>var-[0-9a-f]{6,32})$")


@dataclass(frozen=True)
class Servable:
    model: str  # the uploaded model's name (a variant's parent)
    version: str  # "1", "2", ... or a variant id: the KServe model_version
    format: str
    sha256: str
    size_bytes: int
    signature: Signature  # with `text` set when the gateway tokenizes for it
    # (the source folder's blob, runtimes.hf.text.TextSettings as JSON) when it takes text
    text: tuple[str, dict[str, Any]] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.model, self.version)

    @property
    def is_variant(self) -> bool:
        return not self.version.isdigit()

    @property
    def variant_label(self) -> str:
        """The `variant` metric label: "v<version>" for uploads, the id for variants."""
        return self.version if self.is_variant else f"v{self.version}"


def from_model(record: ModelRecord) -> Servable:
    signature = record.served_signature
    return Servable(
        record.name,
        str(record.version),
        record.format,
        record.sha256,
        record.size_bytes,
        signature,
        _text_of(record, signature),
    )


def from_variant(record: VariantRecord, parent: ModelRecord | None = None) -> Servable:
    """A variant takes text as its parent model does (the same tokenizer), when its
    inputs are still the token inputs."""
    source = parent.source if parent is not None else None
    signature = with_text(record.signature, source.text_input() if source else None)
    return Servable(
        record.parent_model,
        record.id,
        record.format,
        record.sha256,
        record.size_bytes,
        signature,
        _text_of(parent, signature) if parent is not None else None,
    )


def _text_of(record: ModelRecord, signature: Signature) -> tuple[str, dict[str, Any]] | None:
    if signature.text is None or record.source is None:
        return None
    return (record.source.sha256, record.source.text)


def _parent(repo: Repository, record: VariantRecord) -> ModelRecord | None:
    try:
        return repo.get_model(record.parent_model, record.parent_version)
    except NotFound:
        return None


class ServableResolver:
    """Resolves names on every inference request, so answers are cached briefly.

    An entry is used while it is younger than `cache_s` AND no write went through this
    process's repository since it was filled (`repo.write_generation`): an upload or delete
    made here is seen at once; one made by another replica (a shared PostgreSQL) within
    `cache_s`. Only successful answers are cached: a name that is missing now is looked
    up again on the next request.
    """

    def __init__(self, repo: Repository, cache_s: float = DEFAULT_CACHE_S) -> None:
        self._repo = repo
        self._cache_s = cache_s
        self._cache: dict[tuple[str, str], tuple[Servable, float, int]] = {}

    def resolve(self, name: str, version: str = "") -> Servable:
        """The servable a (model name, model_version) pair designates; NotFound if none."""
        key = (name, version)
        hit = self._cache.get(key)
        generation = self._repo.write_generation
        now = time.monotonic()
        if hit is not None and hit[2] == generation and now - hit[1] < self._cache_s:
            return hit[0]
        servable = self._lookup(name, version)
        if self._cache_s > 0:
            if len(self._cache) >= MAX_CACHED_NAMES:  # names come from requests: bounded
                self._cache.clear()
            self._cache[key] = (servable, now, generation)
        return servable

    def _lookup(self, name: str, version: str) -> Servable:
        named = VARIANT_SERVING_NAME.match(name)
        if named and version in ("", named["variant"]):
            return self._variant(named["model"], named["variant"])
        if VARIANT_ID.match(version):
            return self._variant(name, version)
        return from_model(self._repo.get_model(name, parse_version(version)))

    def _variant(self, model: str, variant_id: str) -> Servable:
        record = self._repo.get_variant(variant_id)
        if record.parent_model != model:
            raise NotFound(f"model {model!r} has no variant {variant_id!r}")
        return from_variant(record, _parent(self._repo, record))

    def all(self) -> list[Servable]:
        records = self._repo.list_models()
        by_version = {(r.name, r.version): r for r in records}
        variants = [
            from_variant(r, by_version.get((r.parent_model, r.parent_version)))
            for r in self._repo.list_variants()
        ]
        return [from_model(r) for r in records] + variants


def parse_version(text: str) -> int:
    """A numeric KServe `model_version`: "" means latest (0), else a positive integer."""
    if not text:
        return 0
    if not text.isdigit() or int(text) < 1:
        raise InvalidArgument(
            f"model_version must be empty, a positive integer or a variant id (var-...), "
            f"got {text!r}"
        )
    return int(text)
