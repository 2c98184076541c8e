"""A tiny HTTP side door: /healthz for probes, /metrics for Prometheus, /snapshot.jpg for eyes.

Standard library only, one daemon thread, so it costs nothing on the Pi and can never keep
the process alive on shutdown. Handlers only read state through the callables they are
given; they never touch the frame loop.

Why a selector loop and not ThreadingHTTPServer: a thread per connection with no timeout let
~120 idle sockets exhaust the unit's TasksMax=128, after which the *frame loop* could not
start a decoder thread and the service died. Here every connection is a buffer in one
thread: at most MAX_CONNECTIONS are open (a new one pushes out the oldest unfinished one,
so an attacker holding sockets cannot lock a probe out), and a request that has not fully
arrived within REQUEST_TIMEOUT_S is dropped however slowly it trickles in (slowloris).
Requests are parsed by the stdlib's BaseHTTPRequestHandler, fed from memory.

Authentication: with a non-loopback `http.host`, every page except /healthz needs
`Authorization: Bearer <http.token>` (config loading refuses such a host without a token);
write requests (any method but GET/HEAD) need the token whatever the host, so a write
endpoint added later is guarded from the start. Writes are rate-limited (a token bucket,
429 past it), refused ones included: a token cannot be guessed at network speed.

The page (edge/page.py) plugs in as `page`: whatever the fixed routes do not serve goes to
its handle(), under the same token and rate rules.
"""

from __future__ import annotations

import errno
import hmac
import io
import json
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from edge.config import HttpConfig, is_loopback
from edge.metrics import Metrics
from edge.snapshot import encode_snapshot_jpeg

log = logging.getLogger(__name__)

HealthFn = Callable[[], tuple[bool, dict[str, Any]]]
SnapshotFn = Callable[[], "bytes | None"]

__all__ = ["MAX_CONNECTIONS", "REQUEST_TIMEOUT_S", "HttpServer", "HttpServerError", "encode_snapshot_jpeg"]

MAX_CONNECTIONS = 32  # a dashboard and Prometheus need a handful; the rest is an attack
REQUEST_TIMEOUT_S = 5.0  # whole request, from accept to the last body byte
RESPONSE_TIMEOUT_S = 5.0  # a client that does not read its response is dropped after this
MAX_REQUEST_BYTES = 16384  # request line + headers + body; nothing here takes more
SERVER_NAME = "car-detector"  # the Server header: no Python version to fingerprint
READ_METHODS = ("GET", "HEAD")
OPEN_PAGES = ("/healthz",)  # probes (load balancers, uptime checks) carry no token
PAGES = ("/healthz", "/metrics", "/snapshot.jpg")
WRITE_BURST = 20  # writes in a row (a labelling session saves one frame per key press)
WRITE_RATE_PER_S = 2.0  # sustained writes per second, for everyone together


class HttpServerError(RuntimeError):
    """The server cannot start (port taken, bad host)."""


class _Exchange(BaseHTTPRequestHandler):
    """One request parsed from memory and answered into memory.

    The stdlib handler does the HTTP parsing (request line, headers, 400/414/501 answers);
    only its socket plumbing is replaced, so nothing here can block the server thread.
    """

    server_version = SERVER_NAME
    protocol_version = "HTTP/1.0"  # one request per connection: no keep-alive to time out
    app: _App  # set on the subclass made per server

    def __init__(self, raw: bytes, client_address: tuple[Any, ...]) -> None:  # noqa: D107
        self.rfile = io.BytesIO(raw)
        self.wfile = io.BytesIO()
        self.client_address = client_address
        self.handle_one_request()

    def version_string(self) -> str:
        return SERVER_NAME

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        log.debug("http %s " + format, self.client_address[0], *args)

    def _send(self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(code, json.dumps(obj, default=str).encode(), "application/json", headers)

    def _dispatch(self) -> None:
        path, _, query = self.path.partition("?")
        if self.command not in READ_METHODS and not self.app.writes.take(time.monotonic()):
            self._json(429, {"error": f"too many write requests (at most {WRITE_RATE_PER_S:g}/s); retry shortly"},
                       {"Retry-After": "1"})
            return
        refusal = self.app.refusal(self.command, path, self.headers.get("Authorization"))
        if refusal is not None:
            self._json(401, {"error": refusal}, {"WWW-Authenticate": 'Bearer realm="car-detector"'})
            return
        routes = self.app.routes if self.command in READ_METHODS else {}
        route = routes.get(path)
        if route is None and self.app.page is not None:
            route = self._page_route(path, query)
        if route is None:
            if self.command in READ_METHODS:
                self._json(404, {"error": f"no such page {path}", "pages": list(PAGES)})
            else:
                self._json(405, {"error": f"{self.command} is not served here; pages (GET): {', '.join(PAGES)}"},
                           {"Allow": "GET, HEAD"})
            return
        try:
            route(self)
        except Exception as exc:  # a bug in a callback must not kill the server thread
            log.exception("http %s failed", path)
            self._json(500, {"error": f"{type(exc).__name__}: {exc}"})

    def _page_route(self, path: str, query: str) -> Callable[[_Exchange], None] | None:
        """The page's answer to this request, as a route, or None when it has none."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        request = PageRequest(self.command, path, query, self.headers, body, str(self.client_address[0]))
        try:
            answer = self.app.page.handle(request)
        except Exception as exc:  # noqa: BLE001 - as for a fixed route: 500, the server goes on
            log.exception("http %s failed", path)
            self._json(500, {"error": f"{type(exc).__name__}: {exc}"})
            return lambda ex: None
        if answer is None:
            return None
        code, payload, content_type, headers = answer
        return lambda ex: ex._send(code, payload, content_type, headers)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch  # noqa: N815 - stdlib names


@dataclass
class _App:
    """What the pages serve, and who may see them."""

    metrics: Metrics
    health: HealthFn
    snapshot: SnapshotFn
    token: str
    public: bool  # bound to a non-loopback address
    page: Any = None  # edge.page.Page: everything the fixed routes do not serve
    routes: dict[str, Callable[[_Exchange], None]] = field(default_factory=dict)
    writes: TokenBucket = field(default_factory=lambda: TokenBucket(WRITE_BURST, WRITE_RATE_PER_S))

    def __post_init__(self) -> None:
        self.routes = {"/healthz": self._healthz, "/metrics": self._metrics, "/snapshot.jpg": self._snapshot}

    def refusal(self, method: str, path: str, authorization: str | None) -> str | None:
        """Why this request is refused (never echoing what was sent), or None to serve it."""
        write = method not in READ_METHODS
        open_pages = OPEN_PAGES + (self.page.OPEN_PATHS if self.page is not None else ())
        if not write and (not self.public or path in open_pages):
            return None
        if not self.token:
            return "write requests need http.token set in the daemon's config"
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return None
        return "missing or wrong token: send the header 'Authorization: Bearer <http.token>'"

    def _healthz(self, ex: _Exchange) -> None:
        ok, details = self.health()
        ex._json(200 if ok else 503, {"ok": bool(ok), **details})

    def _metrics(self, ex: _Exchange) -> None:
        body, content_type = self.metrics.render()
        ex._send(200, body, content_type)

    def _snapshot(self, ex: _Exchange) -> None:
        jpeg = self.snapshot()
        if jpeg is None:
            ex._json(503, {"error": "no snapshot yet: no frame has been processed"})
        else:
            ex._send(200, jpeg, "image/jpeg")


@dataclass(frozen=True)
class PageRequest:
    """One request as the page sees it (already authorised and rate-checked)."""

    method: str
    path: str  # as sent, percent-encoding and all; the page decodes and checks it
    query: str
    headers: Any  # email.message.Message: case-insensitive .get()
    body: bytes
    client: str


class TokenBucket:
    """`burst` requests at once, refilled at `rate` per second; only the server thread uses it."""

    def __init__(self, burst: int, rate: float) -> None:
        self.burst, self.rate = float(burst), rate
        self.tokens, self.stamp = float(burst), None

    def take(self, now: float) -> bool:
        if self.stamp is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


def _request_size(buf: bytes | bytearray) -> int | None:
    """Bytes of the complete request at the start of `buf`, or None while more must come.

    A body is only expected where Content-Length says so; the stdlib parser checks the rest.
    """
    end = buf.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end, sep = buf.find(b"\n\n"), 2
        if end < 0:
            return None
    length = 0
    for line in bytes(buf[:end]).split(b"\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                length = max(int(value.strip()), 0)
            except ValueError:
                length = 0  # the parser answers 400 for it
    total = end + sep + length
    return total if len(buf) >= total else None


@dataclass
class _Conn:
    sock: socket.socket
    address: tuple[Any, ...]
    deadline: float
    inbox: bytearray = field(default_factory=bytearray)
    outbox: memoryview | None = None  # set once the response is ready


class HttpServer:
    """Serves in a background thread between start() and stop()."""

    def __init__(self, cfg: HttpConfig, metrics: Metrics, health: HealthFn, snapshot: SnapshotFn,
                 page: Any = None) -> None:
        self.host = cfg.host
        self._requested_port = cfg.port
        app = _App(metrics, health, snapshot, cfg.token, public=not is_loopback(cfg.host), page=page)
        self._exchange = type("Exchange", (_Exchange,), {"app": app})
        self._listener: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._conns: dict[int, _Conn] = {}
        self._stopping = threading.Event()
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._bound_port: int | None = None
        self._accept_paused_until = 0.0

    @property
    def port(self) -> int:
        """The bound port (the real one when the config asked for port 0, once started)."""
        return self._bound_port if self._bound_port is not None else self._requested_port

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        if self._listener is not None:
            return
        self._listener = self._listen()
        self._bound_port = int(self._listener.getsockname()[1])
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, name="http-server", daemon=True)
        self._thread.start()
        log.info("http server on http://%s:%d (/healthz /metrics /snapshot.jpg)", self.host, self.port)

    def _listen(self) -> socket.socket:
        try:
            family, type_, proto, _, address = socket.getaddrinfo(
                self.host or None, self._requested_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
            sock = socket.socket(family, type_, proto)
        except OSError as exc:
            raise HttpServerError(self._cannot_listen(exc)) from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart without TIME_WAIT errors
            sock.bind(address)
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise HttpServerError(self._cannot_listen(exc)) from None
        return sock

    def _cannot_listen(self, exc: OSError) -> str:
        hint = ("another process holds it; pick a free http.port or stop the other process"
                if exc.errno == errno.EADDRINUSE else "check http.host and http.port")
        return (f"cannot listen on {self.host}:{self._requested_port} (http.host/http.port): "
                f"{exc.strerror or exc}; {hint}")

    def stop(self) -> None:
        """Stops within ~0.1 s and closes every socket; safe to call twice or before start()."""
        if self._listener is None:
            return
        self._stopping.set()
        if self._wake_w is not None:
            try:
                self._wake_w.send(b"x")
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        for conn in list(self._conns.values()):
            self._close(conn)
        assert self._selector is not None
        self._selector.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._listener = self._selector = self._wake_r = self._wake_w = None
        self._thread = None

    # -- the loop --------------------------------------------------------------------

    def _serve(self) -> None:
        """Never raises: a failure is logged and the loop goes on; the frame loop never sees it."""
        while not self._stopping.is_set():
            try:
                self._step()
            except Exception:  # noqa: BLE001 - a server bug must not end the HTTP side either
                log.exception("http server loop failed; carrying on")
                time.sleep(0.1)

    def _step(self) -> None:
        assert self._selector is not None
        now = time.monotonic()
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            self._selector.register(self._listener, selectors.EVENT_READ, "accept")  # type: ignore[arg-type]
        nearest = min((c.deadline for c in self._conns.values()), default=now + 1.0)
        timeout = min(max(nearest - now, 0.0), 1.0)
        if self._accept_paused_until:
            timeout = min(timeout, max(self._accept_paused_until - now, 0.0))
        for key, events in self._selector.select(timeout):
            if key.data == "accept":
                self._accept()
            elif key.data == "wake":
                return
            else:
                conn = self._conns.get(key.fd)
                if conn is None:
                    continue
                if events & selectors.EVENT_READ:
                    self._receive(conn)
                elif events & selectors.EVENT_WRITE:
                    self._transmit(conn)
        self._expire(time.monotonic())

    def _accept(self) -> None:
        assert self._listener is not None and self._selector is not None
        for _ in range(64):  # a burst per wake-up, then serve the others
            try:
                sock, address = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # EMFILE/ENFILE/ENOBUFS: the backlog waits, the loop goes on
                log.warning("http accept failed: %s; pausing accepts for 0.5 s", exc)
                self._selector.unregister(self._listener)
                self._accept_paused_until = time.monotonic() + 0.5
                return
            if len(self._conns) >= MAX_CONNECTIONS:
                self._make_room(sock)
            sock.setblocking(False)
            conn = _Conn(sock, address, time.monotonic() + REQUEST_TIMEOUT_S)
            self._conns[sock.fileno()] = conn
            self._selector.register(sock, selectors.EVENT_READ, "conn")

    def _make_room(self, newcomer: socket.socket) -> None:
        """At the cap the oldest connection still sending its request goes: a real client
        sends its request in one packet, so the oldest unfinished one is the likeliest idler."""
        waiting = [c for c in self._conns.values() if c.outbox is None]
        victim = min(waiting or self._conns.values(), key=lambda c: c.deadline)
        log.debug("http: %d connections open, dropping %s", len(self._conns), victim.address[0])
        self._close(victim)

    def _receive(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        conn.inbox += data
        size = _request_size(conn.inbox)
        if size is None and len(conn.inbox) <= MAX_REQUEST_BYTES:
            return
        if size is None or size > MAX_REQUEST_BYTES:
            self._reply(conn, self._plain(413, "request too large"))
            return
        self._reply(conn, self._exchange(bytes(conn.inbox[:size]), conn.address).wfile.getvalue())

    def _reply(self, conn: _Conn, response: bytes) -> None:
        assert self._selector is not None
        conn.outbox = memoryview(response)
        conn.deadline = time.monotonic() + RESPONSE_TIMEOUT_S
        self._selector.modify(conn.sock, selectors.EVENT_WRITE, "conn")
        self._transmit(conn)

    def _transmit(self, conn: _Conn) -> None:
        assert conn.outbox is not None
        try:
            sent = conn.sock.send(conn.outbox)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        conn.outbox = conn.outbox[sent:]
        if not conn.outbox:
            self._close(conn)

    def _expire(self, now: float) -> None:
        for conn in [c for c in self._conns.values() if c.deadline <= now]:
            if conn.outbox is None and conn.inbox:  # slow sender: say why, best effort
                try:
                    conn.sock.send(self._plain(408, "request not received in time"))
                except OSError:
                    pass
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        self._conns.pop(conn.sock.fileno(), None)
        if self._selector is not None:
            try:
                self._selector.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        conn.sock.close()

    @staticmethod
    def _plain(code: int, reason: str) -> bytes:
        body = json.dumps({"error": reason}).encode()
        return (f"HTTP/1.0 {code} {reason}\r\nServer: {SERVER_NAME}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
