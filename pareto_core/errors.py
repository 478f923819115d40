"""The project's exception types, free of any wire protocol.

Domain code raises these. Each carries `code`, the name of its canonical error code (the
Google API error model that gRPC status codes and KServe v2 HTTP errors are both drawn
from); the transport layers map it: `service/api/error_interceptor.py` to gRPC status
codes, the REST front end to HTTP statuses. Messages are written for the caller: they
name the field, tensor or object and say what was expected and what was got.
"""

from __future__ import annotations

from typing import ClassVar


class ParetoError(Exception):
    """Base class: an error whose message is safe and useful to show to the caller."""

    code: ClassVar[str] = "INTERNAL"


class InvalidArgument(ParetoError):
    code = "INVALID_ARGUMENT"


class NotFound(ParetoError):
    code = "NOT_FOUND"


class AlreadyExists(ParetoError):
    code = "ALREADY_EXISTS"


class ResourceExhausted(ParetoError):
    code = "RESOURCE_EXHAUSTED"


class FailedPrecondition(ParetoError):
    code = "FAILED_PRECONDITION"


class Unauthenticated(ParetoError):
    code = "UNAUTHENTICATED"


class PermissionDenied(ParetoError):
    code = "PERMISSION_DENIED"


class Unavailable(ParetoError):
    code = "UNAVAILABLE"


class Cancelled(ParetoError):
    code = "CANCELLED"


class JobFenced(Cancelled):
    """A worker's job was taken from its replica (re-queued or run again elsewhere): the
    worker stops like a cancelled one and writes nothing more."""


class DeadlineExceeded(ParetoError):
    code = "DEADLINE_EXCEEDED"


class Internal(ParetoError):
    code = "INTERNAL"


# Every code above; a transport maps each of them (a test checks its table is complete).
CODES: frozenset[str] = frozenset(cls.code for cls in (ParetoError, *ParetoError.__subclasses__()))
