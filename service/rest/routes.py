"""The REST routes of KServe v2 (and Triton's extensions), each naming the gRPC method it
mirrors: auth asks the same scope table (`service/auth/scopes.py`) for both ports, and
the answer comes from the same servicer semantics.

A route also has a kind, which picks the threads it runs on: `health` answers on the event
loop (never starved), `inference` runs in the inference pool and counts against
PARETO_MAX_INFLIGHT_REQUESTS, `management` runs in a pool of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from pareto_core.errors import NotFound

HEALTH, INFERENCE, MANAGEMENT = "health", "inference", "management"
_KSERVE = "/inference.GRPCInferenceService/"
_MODEL = r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?"


@dataclass(frozen=True)
class Route:
    http_method: str
    pattern: re.Pattern[str]
    grpc_method: str  # the call it mirrors: its scope, its semantics
    kind: str

    @property
    def name(self) -> str:
        return self.grpc_method.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Match:
    route: Route
    name: str = ""
    version: str = ""


def _route(http_method: str, pattern: str, method: str, kind: str = MANAGEMENT) -> Route:
    return Route(http_method, re.compile(pattern + r"/?"), _KSERVE + method, kind)


# First match wins: `/v2/models/stats` is the statistics of every model, not a model.
ROUTES: tuple[Route, ...] = (
    _route("GET", r"/v2/health/live", "ServerLive", HEALTH),
    _route("GET", r"/v2/health/ready", "ServerReady", HEALTH),
    _route("GET", r"/v2", "ServerMetadata"),
    _route("GET", r"/v2/models/stats", "ModelStatistics"),
    _route("GET", _MODEL + r"/stats", "ModelStatistics"),
    _route("GET", _MODEL + r"/ready", "ModelReady"),
    _route("GET", _MODEL + r"/config", "ModelConfig"),
    _route("POST", _MODEL + r"/infer", "ModelInfer", INFERENCE),
    _route("GET", _MODEL, "ModelMetadata"),
    _route("POST", r"/v2/repository/index", "RepositoryIndex"),
    _route("POST", r"/v2/repository/models/(?P<name>[^/]+)/load", "RepositoryModelLoad"),
    _route("POST", r"/v2/repository/models/(?P<name>[^/]+)/unload", "RepositoryModelUnload"),
)


class MethodNotAllowed(NotFound):
    """The path exists, with other HTTP methods (answered 405 with `Allow`)."""

    http_status = 405

    def __init__(self, path: str, allowed: list[str]) -> None:
        super().__init__(f"{path} does not take this HTTP method; it takes {', '.join(allowed)}")
        self.http_headers = (("allow", ", ".join(allowed)),)


def match(http_method: str, path: str) -> Match:
    """The route of (`http_method`, `path`); NotFound, or MethodNotAllowed."""
    allowed = []
    for route in ROUTES:
        found = route.pattern.fullmatch(path)
        if found is None:
            continue
        if route.http_method != http_method:
            allowed.append(route.http_method)
            continue
        groups = found.groupdict()
        return Match(route, unquote(groups.get("name") or ""), unquote(groups.get("version") or ""))
    if allowed:
        raise MethodNotAllowed(path[:200], sorted(set(allowed)))
    raise NotFound(f"no KServe v2 route {http_method} {path[:200]}")
