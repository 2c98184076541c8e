"""A tiny HTTP side door: /healthz for probes, /metrics for Prometheus, /snapshot.jpg for eyes.

Standard library only and in a daemon thread, so it costs nothing on the Pi and can never
keep the process alive on shutdown. Handlers only read state through the callables they are
given; they never touch the frame loop.
"""

from __future__ import annotations

import errno
import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edge.config import HttpConfig
from edge.metrics import Metrics
from edge.snapshot import encode_snapshot_jpeg

log = logging.getLogger(__name__)

HealthFn = Callable[[], tuple[bool, dict[str, Any]]]
SnapshotFn = Callable[[], "bytes | None"]

__all__ = ["HttpServer", "HttpServerError", "encode_snapshot_jpeg"]


class HttpServerError(RuntimeError):
    """The server cannot start (port taken, bad host)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64  # the default 5 drops SYNs when a dashboard and Prometheus poll at once


def _make_handler(metrics: Metrics, health: HealthFn, snapshot: SnapshotFn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "car-detector"
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            log.debug("http %s " + format, self.client_address[0], *args)

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, code: int, obj: Any) -> None:
            self._send(code, json.dumps(obj, default=str).encode(), "application/json")

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            path = self.path.split("?", 1)[0]
            route = {"/healthz": self._healthz, "/metrics": self._metrics,
                     "/snapshot.jpg": self._snapshot}.get(path)
            if route is None:
                self._json(404, {"error": f"no such page {path}",
                                 "pages": ["/healthz", "/metrics", "/snapshot.jpg"]})
                return
            try:
                route()
            except Exception as exc:  # a bug in a callback must not kill the server thread
                log.exception("http %s failed", path)
                self._json(500, {"error": f"{type(exc).__name__}: {exc}"})

        do_HEAD = do_GET  # noqa: N815 - stdlib name

        def _healthz(self) -> None:
            ok, details = health()
            self._json(200 if ok else 503, {"ok": bool(ok), **details})

        def _metrics(self) -> None:
            body, content_type = metrics.render()
            self._send(200, body, content_type)

        def _snapshot(self) -> None:
            jpeg = snapshot()
            if jpeg is None:
                self._json(503, {"error": "no snapshot yet: no frame has been processed"})
            else:
                self._send(200, jpeg, "image/jpeg")

    return Handler


class HttpServer:
    """Serves in a background thread between start() and stop()."""

    def __init__(self, cfg: HttpConfig, metrics: Metrics, health: HealthFn, snapshot: SnapshotFn) -> None:
        self.host = cfg.host
        self._requested_port = cfg.port
        self._handler = _make_handler(metrics, health, snapshot)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._bound_port: int | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when the config asked for port 0, once started)."""
        return self._bound_port if self._bound_port is not None else self._requested_port

    def start(self) -> None:
        if self._server is not None:
            return
        try:
            self._server = _Server((self.host, self._requested_port), self._handler)
        except OSError as exc:
            hint = ("another process holds it; pick a free http.port or stop the other process"
                    if exc.errno == errno.EADDRINUSE else "check http.host and http.port")
            raise HttpServerError(
                f"cannot listen on {self.host}:{self._requested_port} (http.host/http.port): "
                f"{exc.strerror or exc}; {hint}"
            ) from None
        self._bound_port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
            name="http-server", daemon=True,
        )
        self._thread.start()
        log.info("http server on http://%s:%d (/healthz /metrics /snapshot.jpg)", self.host, self.port)

    def stop(self) -> None:
        """Stops accepting within ~0.1 s; safe to call twice or before start()."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=1.0)
        self._server = None
        self._thread = None
