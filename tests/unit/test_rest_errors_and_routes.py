"""The REST port's tables: every error code has an HTTP status (and a gRPC one), every
route names a gRPC method the scope table knows, and paths find their routes."""

from __future__ import annotations

import pytest
from tritonclient.grpc import service_pb2 as pb

from pareto_core.errors import CODES, InvalidArgument, NotFound
from service.api.error_interceptor import GRPC_STATUS
from service.auth.scopes import METHOD_SCOPES
from service.rest.errors import HTTP_STATUS, PayloadTooLarge, http_error
from service.rest.routes import ROUTES, MethodNotAllowed, match


def test_both_status_tables_cover_every_error_code():
    assert set(HTTP_STATUS) == CODES
    assert set(GRPC_STATUS) == CODES


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("INVALID_ARGUMENT", 400),
        ("NOT_FOUND", 404),
        ("ALREADY_EXISTS", 409),
        ("FAILED_PRECONDITION", 400),
        ("RESOURCE_EXHAUSTED", 429),
        ("UNAUTHENTICATED", 401),
        ("PERMISSION_DENIED", 403),
        ("UNAVAILABLE", 503),
        ("DEADLINE_EXCEEDED", 504),
        ("INTERNAL", 500),
    ],
)
def test_statuses_as_kserve_and_triton_answer(code, status):
    assert HTTP_STATUS[code] == status


def test_errors_become_kserve_json_and_bugs_leak_nothing():
    assert http_error(InvalidArgument("bad x"), "ModelInfer") == (400, b'{"error": "bad x"}')
    assert http_error(PayloadTooLarge("big"), "ModelInfer")[0] == 413
    hidden = {"/secret/dir": "<data dir>"}
    assert b"<data dir>" in http_error(NotFound("no /secret/dir/x"), "M", hidden)[1]
    status, body = http_error(ValueError("secret detail"), "ModelInfer")
    assert status == 500 and b"secret" not in body


def test_every_route_mirrors_a_kserve_grpc_method():
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    methods = {f"/{service.full_name}/{m.name}" for m in service.methods}
    assert {route.grpc_method for route in ROUTES} <= methods
    assert {route.grpc_method for route in ROUTES} <= set(METHOD_SCOPES)


@pytest.mark.parametrize(
    ("method", "path", "name", "route", "version"),
    [
        ("GET", "/v2", "", "ServerMetadata", ""),
        ("GET", "/v2/health/ready", "", "ServerReady", ""),
        ("GET", "/v2/models/stats", "", "ModelStatistics", ""),
        ("GET", "/v2/models/digits/stats", "digits", "ModelStatistics", ""),
        ("GET", "/v2/models/digits/versions/2/stats", "digits", "ModelStatistics", "2"),
        ("GET", "/v2/models/digits", "digits", "ModelMetadata", ""),
        ("GET", "/v2/models/digits/versions/var-0a1b2c", "digits", "ModelMetadata", "var-0a1b2c"),
        ("POST", "/v2/models/d.var-0a1b2c/infer", "d.var-0a1b2c", "ModelInfer", ""),
        ("GET", "/v2/models/digits/ready/", "digits", "ModelReady", ""),
        ("POST", "/v2/repository/models/digits/unload", "digits", "RepositoryModelUnload", ""),
    ],
)
def test_paths_find_their_routes(method, path, name, route, version):
    found = match(method, path)
    assert (found.route.name, found.name, found.version) == (route, name, version)


def test_unknown_paths_and_methods():
    with pytest.raises(NotFound):
        match("GET", "/v2/models/a/b/c")
    with pytest.raises(MethodNotAllowed) as err:
        match("DELETE", "/v2/models/digits")
    assert err.value.http_headers == (("allow", "GET"),)
