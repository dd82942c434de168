"""The simulator's control channel: JSON lines over a Unix socket in the data dir.

``tuquan sim press panic-1`` connects, sends ``{"cmd": "press", "name": "panic-1"}`` and prints
the one-line JSON answer. Each connection is served on its own thread; a bad request gets
``{"ok": false, "error": ...}`` and never disturbs the hub.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SOCKET_NAME = "sim.sock"
Handler = Callable[[dict[str, Any]], dict[str, Any]]


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    handle_request_json: Handler


class _Connection(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        for raw in self.rfile:
            try:
                request = json.loads(raw)
                if not isinstance(request, dict):
                    raise ValueError("request must be a JSON object")
                answer = self.server.handle_request_json(request)
            except Exception as exc:  # answer every request, whatever it was
                answer = {"ok": False, "error": str(exc)}
            self.wfile.write(json.dumps(answer).encode() + b"\n")
            self.wfile.flush()


class ControlServer:
    def __init__(self, data_dir: Path, handler: Handler) -> None:
        self.path = Path(data_dir) / SOCKET_NAME
        if self.path.exists():
            self.path.unlink()
        self._server = _Server(str(self.path), _Connection)
        self._server.handle_request_json = handler
        os.chmod(self.path, 0o660)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="sim-control", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        log.info("simulator control socket at %s", self.path)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.path.unlink(missing_ok=True)


def request(data_dir: Path, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to a running simulated hub; raises OSError if none answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(Path(data_dir) / SOCKET_NAME))
        sock.sendall(json.dumps(message).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("simulated hub closed the connection")
            buf += chunk
    answer = json.loads(buf)
    if not isinstance(answer, dict):
        raise ValueError("bad answer from simulated hub")
    return answer
