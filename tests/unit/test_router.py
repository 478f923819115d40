"""The routing table: weighted random, sticky keys (weighted rendezvous), pinning."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest

from pareto_core.errors import NotFound
from service.deployments.router import Route


@dataclass(frozen=True)
class T:
    name: str
    version: str
    weight: float
    is_shadow: bool = False


def route(*weights: float, shadow: bool = True) -> Route[T]:
    targets = [T(f"t{i}", f"var-00000{i}", w) for i, w in enumerate(weights)]
    if shadow:
        targets.append(T("s", "1", 0.0, is_shadow=True))
    return Route("ep", targets)


def test_weighted_random_follows_the_weights_and_never_picks_a_shadow():
    counts = Counter(route(70, 20, 10).choose().name for _ in range(20_000))
    assert set(counts) == {"t0", "t1", "t2"}
    for name, share in (("t0", 0.7), ("t1", 0.2), ("t2", 0.1)):
        assert abs(counts[name] / 20_000 - share) < 0.02


def test_zero_weight_primaries_get_no_random_or_sticky_traffic_but_can_be_pinned():
    r = route(100, 0)
    assert {r.choose().name for _ in range(500)} == {"t0"}
    assert {r.choose(key=f"k{i}").name for i in range(500)} == {"t0"}
    assert r.choose(version="var-000001").name == "t1"
    assert r.choose(version="1").name == "s"  # a shadow may be pinned for debugging


def test_sticky_keys_are_stable_split_by_weight_and_move_minimally():
    keys = [f"user-{i}" for i in range(10_000)]
    before = {k: route(50, 50).choose(key=k).name for k in keys}
    assert before == {k: route(50, 50).choose(key=k).name for k in keys}  # a rebuilt table
    assert abs(Counter(before.values())["t0"] / len(keys) - 0.5) < 0.03
    after = {k: route(80, 20).choose(key=k).name for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert all(before[k] == "t1" and after[k] == "t0" for k in moved)  # only toward t0
    assert abs(len(moved) / len(keys) - 0.3) < 0.03  # the 30 points that had to move


def test_pinning_an_unknown_version_names_the_targets():
    with pytest.raises(NotFound) as err:
        route(100).choose(version="var-ffffff")
    assert "'t0'" in str(err.value) and "'var-ffffff'" in str(err.value)


def test_an_endpoint_without_weight_is_refused():
    with pytest.raises(ValueError):
        route(0, 0)
