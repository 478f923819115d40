"""The project's exception types.

Domain code raises these; exactly one place (`ErrorInterceptor` in
`service/interceptors.py`) turns them into gRPC status codes. Messages are written for the
caller: they name the field, tensor or object and say what was expected and what was got.
"""

from __future__ import annotations

import grpc


class ParetoError(Exception):
    """Base class: an error whose message is safe and useful to show to the caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(ParetoError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ParetoError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ParetoError):
    code = grpc.StatusCode.ALREADY_EXISTS


class ResourceExhausted(ParetoError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(ParetoError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(ParetoError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ParetoError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(ParetoError):
    code = grpc.StatusCode.UNAVAILABLE


class Cancelled(ParetoError):
    code = grpc.StatusCode.CANCELLED


class JobFenced(Cancelled):
    """A worker's job was taken from its replica (re-queued or run again elsewhere): the
    worker stops like a cancelled one and writes nothing more (see SqlModels.fence)."""


class DeadlineExceeded(ParetoError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Internal(ParetoError):
    code = grpc.StatusCode.INTERNAL
