"""What each REST route answers, synchronously and free of the HTTP stack.

Every route but inference calls the gRPC servicer's own method with the same request
message and returns its answer as JSON (`json_views.py`), so both ports share one set of
semantics (what is NOT_FOUND, what a model's metadata, config and statistics say).
Inference goes to the data plane with a decode callback built from the REST body
(`codec.py`), like the servicer's. Errors are raised as `ParetoError`s; the server turns
them into KServe JSON errors (`errors.py`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from tritonclient.grpc import service_pb2 as pb

from pareto_core import names
from service.api.inference import InferenceServicer
from service.deployments.router import ROUTE_KEY
from service.rest import codec
from service.rest.json_views import message_json
from service.rest.routes import Match
from service.serving.dataplane import DataPlane

JSON = "application/json"
BINARY = "application/octet-stream"
_FIELDS = ("model_name", "model_version")  # names.serving: how messages name the two


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


def json_reply(value: Any, status: int = HTTPStatus.OK) -> Reply:
    return Reply(status, json.dumps(value, separators=(",", ":")).encode())


class RestApi:
    def __init__(
        self, servicer: InferenceServicer, dataplane: DataPlane, is_ready: Callable[[], bool]
    ) -> None:
        self._servicer = servicer
        self._dataplane = dataplane
        self._is_ready = is_ready
        self._handlers: dict[str, Callable[[Match, bytes], Reply]] = {
            "ServerMetadata": self._server_metadata,
            "ModelMetadata": self._model_metadata,
            "ModelReady": self._model_ready,
            "ModelConfig": self._model_config,
            "ModelStatistics": self._model_statistics,
            "RepositoryIndex": self._repository_index,
            "RepositoryModelLoad": self._load,
            "RepositoryModelUnload": self._unload,
        }

    def health(self, match: Match) -> Reply:
        """ServerLive / ServerReady: 200 when true, 503 when not ready (load balancers and
        probes read the status)."""
        if match.route.name == "ServerLive":
            return json_reply({"live": True})
        ready = self._is_ready()
        return json_reply(
            {"ready": ready}, HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
        )

    def call(self, match: Match, body: bytes) -> Reply:
        """A management route (metadata, config, statistics, repository)."""
        return self._handlers[match.route.name](match, body)

    def infer(
        self,
        match: Match,
        body: bytes,
        headers: Mapping[str, str],
        arrived: float,
    ) -> Reply:
        """POST .../infer. `headers`: lower-case names; `arrived`: time.monotonic() when
        the request came in (Triton's `timeout` parameter counts from there)."""
        name, version = names.serving(match.name, match.version, _FIELDS)
        request = codec.parse(body, headers.get(codec.HEADER_LENGTH))
        timeout = request.timeout_s()
        result = self._dataplane.infer(
            name,
            version,
            request.decode,
            request.route_key(headers.get(ROUTE_KEY)),
            arrived + timeout if timeout is not None else None,
        )
        data, header_length = codec.encode(match.name, request, result)
        if header_length is None:
            return Reply(HTTPStatus.OK, data)
        length = (codec.HEADER_LENGTH, str(header_length))
        return Reply(HTTPStatus.OK, data, BINARY, (length,))

    def _server_metadata(self, match: Match, body: bytes) -> Reply:
        return json_reply(message_json(self._servicer.ServerMetadata(None, None)))

    def _model_metadata(self, match: Match, body: bytes) -> Reply:
        request = pb.ModelMetadataRequest(name=match.name, version=match.version)
        return json_reply(message_json(self._servicer.ModelMetadata(request, None)))

    def _model_ready(self, match: Match, body: bytes) -> Reply:
        """200 when an inference would be served now, else 400 with the reason (as
        Triton answers); unknown names are 404."""
        name, version = names.serving(match.name, match.version, ("name", "version"))
        ready, reason = self._dataplane.readiness(name, version)
        if ready:
            return json_reply({"name": match.name, "ready": True})
        answer = {"name": match.name, "ready": False, "error": f"not ready: {reason}"}
        return json_reply(answer, HTTPStatus.BAD_REQUEST)

    def _model_config(self, match: Match, body: bytes) -> Reply:
        request = pb.ModelConfigRequest(name=match.name, version=match.version)
        return json_reply(message_json(self._servicer.ModelConfig(request, None).config))

    def _model_statistics(self, match: Match, body: bytes) -> Reply:
        request = pb.ModelStatisticsRequest(name=match.name, version=match.version)
        return json_reply(message_json(self._servicer.ModelStatistics(request, None)))

    def _repository_index(self, match: Match, body: bytes) -> Reply:
        """Triton's REST index: a JSON array of {name, version, state, reason}."""
        options = codec.optional_json_object(body)
        ready = options.get("ready", False)
        request = pb.RepositoryIndexRequest(ready=ready is True)
        models = self._servicer.RepositoryIndex(request, None).models
        return json_reply([message_json(model) for model in models])

    def _load(self, match: Match, body: bytes) -> Reply:
        codec.optional_json_object(body)
        self._servicer.RepositoryModelLoad(
            pb.RepositoryModelLoadRequest(model_name=match.name), None
        )
        return Reply(HTTPStatus.OK, b"")

    def _unload(self, match: Match, body: bytes) -> Reply:
        codec.optional_json_object(body)
        request = pb.RepositoryModelUnloadRequest(model_name=match.name)
        self._servicer.RepositoryModelUnload(request, None)
        return Reply(HTTPStatus.OK, b"")
