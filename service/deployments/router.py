"""Endpoint -> target choice: weighted random, sticky keys, explicit pinning.

A `Route` is an immutable routing table of one endpoint, built once per change of the
deployment and swapped in by a single assignment: a request sees the old table or the new
one, never a mix. Choosing is pure Python arithmetic on precomputed values (no locks, no
I/O), a few microseconds (`bench/routing.py` measures it).

Sticky routing uses weighted rendezvous hashing (highest random weight): every primary
target scores `-weight / ln(u)`, where `u` in (0, 1) is a hash of (target name, key); the
highest score wins. A key therefore lands on target i with probability weight_i / 100,
always on the same target while the weights stay, and when weights change only the keys
that must move (toward a target that gained weight, or away from one that lost) do.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from pareto_core.errors import NotFound

ROUTE_KEY = "pareto-route-key"  # request parameter or gRPC metadata key
_HASH_SCALE = float(2**64)


class Routable(Protocol):
    name: str  # unique within the endpoint
    version: str  # the KServe model_version it serves
    weight: float  # percent; shadows 0
    is_shadow: bool


T = TypeVar("T", bound=Routable)


class Route(Generic[T]):
    """The routing table of one endpoint (immutable once built)."""

    def __init__(self, endpoint: str, targets: Sequence[T]) -> None:
        self.endpoint = endpoint
        self.targets = tuple(targets)
        self.primaries = tuple(t for t in self.targets if not t.is_shadow and t.weight > 0)
        self.shadows = tuple(t for t in self.targets if t.is_shadow)
        if not self.primaries:
            raise ValueError(f"endpoint {endpoint!r} has no primary target with weight > 0")
        cumulative, total = [], 0.0
        for target in self.primaries:
            total += target.weight
            cumulative.append(total)
        self._cumulative = cumulative
        self._total = total
        self._last = len(self.primaries) - 1
        self._hashers = [
            hashlib.blake2b(digest_size=8, key=t.name.encode()[:64]) for t in self.primaries
        ]
        self._by_name = {t.name: t for t in self.targets}
        self._by_version: dict[str, T] = {}
        for t in sorted(self.targets, key=lambda t: t.is_shadow):  # primaries win
            self._by_version.setdefault(t.version, t)

    def choose(self, version: str = "", key: str = "") -> T:
        """The target that answers: pinned by `version`, else sticky by `key`, else random."""
        if version:
            return self.pinned(version)
        if key:
            return self.sticky(key)
        index = bisect.bisect_right(self._cumulative, random.random() * self._total)
        return self.primaries[min(index, self._last)]

    def pinned(self, version: str) -> T:
        target = self._by_name.get(version) or self._by_version.get(version)
        if target is None:
            names = [t.name for t in self.targets]
            raise NotFound(
                f"endpoint {self.endpoint!r} has no target {version!r} to pin with "
                f"model_version; its targets: {names} (leave model_version empty to be routed)"
            )
        return target

    def sticky(self, key: str) -> T:
        data = key.encode()
        best, best_score = 0, -math.inf
        for index, (target, hasher) in enumerate(zip(self.primaries, self._hashers, strict=True)):
            h = hasher.copy()
            h.update(data)
            u = (int.from_bytes(h.digest(), "little") + 0.5) / _HASH_SCALE
            score = -target.weight / math.log(u)
            if score > best_score:
                best, best_score = index, score
        return self.primaries[best]
