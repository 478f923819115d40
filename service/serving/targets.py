"""What one inference runs on: a servable, on a runtime, with the caller's runtime options."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pareto_core.errors import ParetoError
from runtimes import registry
from service.serving.servables import Servable


@dataclass(frozen=True, eq=False)
class Target:
    """`runtime` "" is the default runtime of the servable's format; `options` are the
    caller's (a deployment target's); the process's defaults fill in the rest at load
    (runtimes/options.py). One session is loaded per `key`."""

    servable: Servable
    runtime: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)

    @cached_property
    def key(self) -> tuple[str, ...]:
        options = json.dumps(dict(self.options), sort_keys=True) if self.options else ""
        return (*self.servable.key, self.runtime, options)

    @property
    def is_plain(self) -> bool:
        """Whether it is what a request for the servable's own name runs on."""
        return not self.runtime and not self.options

    @property
    def served_name(self) -> str:
        """The KServe model name the servable is served under on its own."""
        servable = self.servable
        return f"{servable.model}.{servable.version}" if servable.is_variant else servable.model

    def runtime_label(self) -> str:
        """The runtime that serves it (for labels and metadata); "" when the format has no
        default runtime here."""
        if self.runtime:
            return self.runtime
        try:
            return registry.runtime_for_format(self.servable.format).name
        except ParetoError:  # no default runtime on this host: nothing to name
            return ""


def deployment_target(servable: Servable, runtime: str, options: Mapping[str, Any]) -> Target:
    """A target a deployment names: its format's default runtime, named or not, is the
    plain one, so a target without options of its own shares the plain session."""
    default = registry.runtime_for_format(servable.format).name
    return Target(servable, "" if runtime in ("", default) else runtime, dict(options))
