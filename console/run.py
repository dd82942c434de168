"""``tuquan console``: the receiver, the duty desk and the web console in one process.

- the receiver (``commune.receiver.Receiver``) stores the hubs' events and snapshots in
  ``<data_dir>/receiver.sqlite3`` and ``<data_dir>/snapshots`` and sends the receipts, as
  ``tuquan receive`` does;
- the desk (``commune.desk.Desk``) follows the stored events into alerts, watches the hubs,
  escalates, and sends operators' commands;
- the web app (``console.app``) serves the pages and ``/api/v1`` with uvicorn.

It runs until SIGTERM/SIGINT (uvicorn's own handlers, when on the main thread) or until
``stop`` is set, then stops the web server, the desk and the receiver, in that order.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from commune.config import ReceiverConfig
from commune.station import Station
from console.app import create_app
from gateway.broker import BrokerSettings

log = logging.getLogger(__name__)


def url_of(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def make_server(app: object, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for ``app`` that ``should_exit`` stops; its logging is ours."""
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)


def run_console(
    config: ReceiverConfig,
    data_dir: Path,
    listen: tuple[str, int],
    broker: BrokerSettings,
    stop: threading.Event | None = None,
    *,
    on_server: Callable[[uvicorn.Server], None] | None = None,
) -> int:
    """Run the receiver, the desk and the console until stopped; the exit status (0).
    Raises ReceiverError when the event store cannot be opened.

    ``on_server`` is given the web server before it runs (to wait on ``server.started``)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    station = Station(data_dir, config, broker)
    station.start()
    try:
        app = create_app(station.desk, config, data_dir)
        server = make_server(app, *listen)
        if on_server is not None:
            on_server(server)
        if stop is not None:
            threading.Thread(
                target=_stop_when_set, args=(stop, server, app), name="console-stop", daemon=True
            ).start()
        log.info(
            "console: %s (receiver and desk of commune %s, data in %s)",
            url_of(*listen),
            config.receiver.commune,
            data_dir,
        )
        with _signals_stop(server):
            server.run()
    finally:
        station.stop()
    return 0


@contextmanager
def _signals_stop(server: uvicorn.Server) -> Iterator[None]:
    """SIGTERM and SIGINT stop the server, and then only the server: uvicorn re-raises the
    signal it caught once it has shut down, which with the default handlers would end the
    process there, before the desk and the receiver are stopped (and with status -15)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop_server_only(signum: int, frame: object) -> None:
        server.should_exit = True

    previous = {
        sig: signal.signal(sig, stop_server_only) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_server(server: uvicorn.Server, app: FastAPI) -> None:
    """Stop the web server from any thread: the live streams end first, so that it need not
    wait for every browser to hang up."""
    app.state.console.notices.end_streams()
    server.should_exit = True


def _stop_when_set(stop: threading.Event, server: uvicorn.Server, app: FastAPI) -> None:
    stop.wait()
    stop_server(server, app)
