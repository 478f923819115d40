"""The REST port: a bare ASGI app on uvicorn (httptools), in a thread of its own.

Chosen by measurement (bench/http_stacks.py, docs/serving.md): on the same small infer
endpoint it served more requests per second than aiohttp and than Starlette on the same
uvicorn; routing is ours (`routes.py`), so a framework would add only its cost.

The event loop only parses, routes, checks tokens, admits and reads bodies; whatever may
block (inference, database reads, loading a model) runs in bounded thread pools:
PARETO_HTTP_WORKERS threads for inference, `MANAGEMENT_THREADS` for the other routes.
Health answers on the loop, so it is never starved. An inference request counts against
PARETO_MAX_INFLIGHT_REQUESTS (the limit gRPC counts against too) from its arrival until
its thread is done, and is answered 429 at once past it. Bodies are bounded by
PARETO_HTTP_MAX_BODY_BYTES (413), and a client that stops sending a body for
PARETO_GRPC_STREAM_IDLE_TIMEOUT_S is answered 408.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import uvicorn

from pareto_core.errors import NotFound
from service.auth.guard import Guard
from service.rest import codec
from service.rest.api import Reply, RestApi
from service.rest.errors import PayloadTooLarge, RequestTimeout, http_error
from service.rest.routes import HEALTH, INFERENCE, Match, match
from service.serving.admission import InflightLimit

log = logging.getLogger(__name__)

MANAGEMENT_THREADS = 4
START_TIMEOUT_S = 30.0
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class RestOptions:
    host: str
    port: int
    workers: int
    max_body_bytes: int
    idle_timeout_s: float
    ssl_context: ssl.SSLContext | None = None
    hidden: Mapping[str, str] | None = None  # server paths messages must not show


class _Disconnected(Exception):
    """The client went away before its request was read."""


class RestApp:
    """The ASGI application: route, auth, admission, body, thread pool, reply."""

    def __init__(
        self, api: RestApi, guard: Guard | None, limit: InflightLimit, options: RestOptions
    ) -> None:
        self._api = api
        self._guard = guard
        self._limit = limit
        self._options = options
        self.inference_pool = ThreadPoolExecutor(options.workers, thread_name_prefix="rest-infer")
        self.management_pool = ThreadPoolExecutor(MANAGEMENT_THREADS, thread_name_prefix="rest")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        arrived = time.monotonic()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            found = self._match(scope["method"], scope["path"], headers)
            reply = await self._answer(found, headers, receive, arrived)
        except _Disconnected:
            return
        except Exception as exc:  # ParetoErrors answer with their status; bugs with 500
            reply = self._error(exc, scope["path"][:200])
        await _send(send, reply)

    def _match(self, method: str, path: str, headers: dict[str, str]) -> Match:
        """The route; an unknown one is answered like an unknown gRPC method: refused
        without the admin scope, so that a caller without a token learns nothing."""
        try:
            return match(method, path)
        except NotFound as exc:
            refused = (
                self._guard.check("", list(headers.items()), "header") if self._guard else None
            )
            raise refused or exc from None

    async def _answer(
        self, found: Match, headers: dict[str, str], receive: Receive, arrived: float
    ) -> Reply:
        route = found.route
        if self._guard is not None:
            refused = self._guard.check(route.grpc_method, list(headers.items()), "header")
            if refused is not None:
                raise refused
        if route.kind == HEALTH:
            return self._api.health(found)
        counted = route.kind == INFERENCE
        if counted and not self._limit.try_admit():
            raise self._limit.refusal()
        try:
            body = await self._body(receive, headers)
        except BaseException:
            if counted:
                self._limit.release()
            raise
        if counted:
            job = lambda: self._api.infer(found, body, headers, arrived)  # noqa: E731
            pool = self.inference_pool
        else:
            job, pool = (lambda: self._api.call(found, body)), self.management_pool
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, self._run, job, route.name, counted)

    def _run(self, job: Callable[[], Reply], route: str, counted: bool) -> Reply:
        """In a pool thread: the reply, or the error's; the in-flight place is freed when
        the work is done (not when a waiting task is cancelled)."""
        try:
            return job()
        except Exception as exc:
            return self._error(exc, route)
        finally:
            if counted:
                self._limit.release()

    async def _body(self, receive: Receive, headers: Mapping[str, str]) -> bytes:
        limit = self._options.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(_too_large(int(declared), limit))
        chunks, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), self._options.idle_timeout_s)
            except TimeoutError:
                raise RequestTimeout(
                    f"the client sent no body data for {self._options.idle_timeout_s:g} s "
                    "(PARETO_GRPC_STREAM_IDLE_TIMEOUT_S)"
                ) from None
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(_too_large(size, limit))
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return codec.decompress(b"".join(chunks), headers.get("content-encoding"), limit)

    def _error(self, exc: BaseException, route: str) -> Reply:
        status, body = http_error(exc, route, self._options.hidden)
        extra = getattr(exc, "http_headers", ())
        return Reply(status, body, headers=tuple(extra))

    def close(self) -> None:
        self.inference_pool.shutdown(wait=False, cancel_futures=True)
        self.management_pool.shutdown(wait=False, cancel_futures=True)


def _too_large(size: int, limit: int) -> str:
    return (
        f"the request body has {size} bytes or more, over the limit of {limit} "
        "(PARETO_HTTP_MAX_BODY_BYTES)"
    )


async def _send(send: Send, reply: Reply) -> None:
    headers = [
        (b"content-type", reply.content_type.encode()),
        (b"content-length", str(len(reply.body)).encode()),
        *((k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers),
    ]
    await send({"type": "http.response.start", "status": int(reply.status), "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


class RestServer:
    """uvicorn on a socket bound at construction (a port in use fails `GatewayServer.start`
    at once), served from a thread of its own once `start` is called."""

    def __init__(self, app: RestApp, options: RestOptions) -> None:
        self._app = app
        self._socket = _bind(options.host, options.port)
        self.port: int = self._socket.getsockname()[1]
        context = options.ssl_context
        config = uvicorn.Config(
            app,
            http="httptools",
            loop="asyncio",
            interface="asgi3",
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            server_header=False,
            ssl_context_factory=(lambda config, default: context) if context else None,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="rest", daemon=True)
        self._failed: BaseException | None = None

    def _serve(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # SystemExit from uvicorn included
            self._failed = exc
            log.error("the REST server stopped: %r", exc)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the REST server did not start: {self._failed!r}")
            time.sleep(0.01)

    def begin_stop(self, grace: float) -> None:
        """Stop taking connections; requests in flight get `grace` seconds to finish."""
        self._server.config.timeout_graceful_shutdown = grace  # type: ignore[assignment]
        self._server.should_exit = True

    def wait_stopped(self, timeout: float) -> None:
        self._thread.join(timeout)
        self._app.close()
        if not self._thread.is_alive():
            return
        self._server.force_exit = True
        self._thread.join(5.0)
        self._socket.close()


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, with TCP_NODELAY for the connections it accepts (Linux copies it
    to them). asyncio sets it only on sockets whose protocol number is IPPROTO_TCP, which
    `create_server` leaves 0; without it, a response's body segment waits for the client's
    delayed ACK of the header segment: 40 ms per keep-alive request."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host.strip("[]"), port), family=family, backlog=2048)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
