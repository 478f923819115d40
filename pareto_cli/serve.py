"""`pareto serve`: run the gateway until SIGTERM/SIGINT, then stop gracefully."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

import click

from pareto_core.errors import ParetoError
from service.settings import SettingsError, load_settings

SIGNAL_POLL_S = 0.5


@click.command()
@click.option("--host", default=None, help="Bind address (env PARETO_HOST, default 0.0.0.0).")
@click.option("--port", type=int, default=None, help="gRPC port (env PARETO_PORT, default 8001).")
@click.option("--metrics-port", type=int, default=None, help="Metrics port (PARETO_METRICS_PORT).")
@click.option(
    "--http-port",
    type=int,
    default=None,
    help="KServe v2 REST port (env PARETO_HTTP_PORT, default 8000; -1 = off).",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Store location (env PARETO_DATA_DIR, default ./.pareto).",
)
def serve(
    host: str | None,
    port: int | None,
    metrics_port: int | None,
    http_port: int | None,
    data_dir: Path | None,
):
    """Run the gateway: management API, KServe v2 inference (gRPC and REST), health,
    reflection, metrics."""
    from service.server import GatewayServer

    try:
        settings = load_settings(
            host=host, port=port, metrics_port=metrics_port, http_port=http_port, data_dir=data_dir
        )
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    server = GatewayServer(settings)
    try:
        server.start()
    except (ParetoError, RuntimeError, SettingsError) as exc:
        raise click.ClickException(f"cannot start: {exc}") from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    rest = f", REST :{server.http_port}" if server.http_port else ""
    click.echo(
        f"pareto listening on {settings.host}:{server.port} (metrics :{server.metrics_port}{rest})",
        err=True,
    )
    # Not a bare stop.wait(): the kernel may deliver SIGTERM to one of gRPC's threads, and
    # then a main thread blocked on a lock without a timeout never runs the handler
    # (Python runs signal handlers in the main thread only, between bytecodes).
    while not stop.wait(SIGNAL_POLL_S):
        pass
    server.stop(grace=settings.shutdown_grace_s, delay=settings.shutdown_delay_s)
    sys.exit(0)
