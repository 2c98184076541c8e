"""HttpServer over real sockets with urllib, and the snapshot JPEG encoder."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edge.config import HttpConfig
from edge.events import Box
from edge.http_server import HttpServer, HttpServerError, encode_snapshot_jpeg
from edge.metrics import Metrics


class State:
    """What the daemon would expose; mutable so a test can flip health mid-run."""

    def __init__(self) -> None:
        self.ok = True
        self.jpeg: bytes | None = None
        self.fail = False

    def health(self) -> tuple[bool, dict[str, Any]]:
        if self.fail:
            raise RuntimeError("health check exploded")
        return self.ok, {"last_frame_age_s": 0.1 if self.ok else 42.0}

    def snapshot(self) -> bytes | None:
        return self.jpeg


@pytest.fixture
def served() -> Iterator[tuple[HttpServer, State, Metrics]]:
    state, metrics = State(), Metrics()
    server = HttpServer(HttpConfig(host="127.0.0.1", port=0), metrics, state.health, state.snapshot)
    server.start()
    try:
        yield server, state, metrics
    finally:
        server.stop()


def get(server: HttpServer, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def test_port_zero_binds_a_free_port(served: tuple[HttpServer, State, Metrics]) -> None:
    server, _, _ = served
    assert server.port > 0


def test_healthz_follows_the_health_callback(served: tuple[HttpServer, State, Metrics]) -> None:
    server, state, _ = served
    code, ctype, body = get(server, "/healthz")
    assert (code, ctype) == (200, "application/json")
    assert json.loads(body) == {"ok": True, "last_frame_age_s": 0.1}
    state.ok = False  # frames stopped
    code, _, body = get(server, "/healthz")
    assert code == 503 and json.loads(body) == {"ok": False, "last_frame_age_s": 42.0}


def test_a_failing_callback_gives_500_and_the_server_keeps_serving(
    served: tuple[HttpServer, State, Metrics],
) -> None:
    server, state, _ = served
    state.fail = True
    code, _, body = get(server, "/healthz")
    assert code == 500 and "health check exploded" in json.loads(body)["error"]
    state.fail = False
    assert get(server, "/healthz")[0] == 200


def test_metrics_page(served: tuple[HttpServer, State, Metrics]) -> None:
    server, _, metrics = served
    metrics.inc_processed(5)
    code, ctype, body = get(server, "/metrics")
    assert code == 200 and ctype.startswith("text/plain")
    assert "car_detector_frames_processed_total 5.0" in body.decode()


def test_snapshot_is_503_until_there_is_one(served: tuple[HttpServer, State, Metrics]) -> None:
    server, state, _ = served
    code, _, body = get(server, "/snapshot.jpg")
    assert code == 503 and "no snapshot" in json.loads(body)["error"]
    state.jpeg = encode_snapshot_jpeg(np.full((40, 60), 128, np.uint8), [])
    code, ctype, body = get(server, "/snapshot.jpg?t=1")
    assert (code, ctype) == (200, "image/jpeg") and body == state.jpeg


def test_unknown_path_is_404(served: tuple[HttpServer, State, Metrics]) -> None:
    server, _, _ = served
    code, _, body = get(server, "/admin")
    assert code == 404 and "/healthz" in json.loads(body)["pages"]


def test_concurrent_requests(served: tuple[HttpServer, State, Metrics]) -> None:
    server, _, _ = served
    codes: list[int] = []
    threads = [threading.Thread(target=lambda: codes.append(get(server, "/metrics")[0])) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert codes == [200] * 8


def test_stop_is_quick_and_frees_the_port() -> None:
    state = State()
    server = HttpServer(HttpConfig(host="127.0.0.1", port=0), Metrics(), state.health, state.snapshot)
    server.stop()  # before start: nothing to do
    server.start()
    port = server.port
    assert get(server, "/healthz")[0] == 200
    t0 = time.monotonic()
    server.stop()
    assert time.monotonic() - t0 < 1.0
    server.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    again = HttpServer(HttpConfig(host="127.0.0.1", port=port), Metrics(), state.health, state.snapshot)
    again.start()  # the port is reusable right away
    again.stop()


def test_port_in_use_names_the_config_keys() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        state = State()
        server = HttpServer(HttpConfig(host="127.0.0.1", port=port), Metrics(), state.health, state.snapshot)
        with pytest.raises(HttpServerError, match=rf"127\.0\.0\.1:{port} \(http\.host/http\.port\)"):
            server.start()


def decode(jpeg: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(jpeg))
    assert img.format == "JPEG"
    return np.asarray(img.convert("RGB")).astype(int)


def test_snapshot_jpeg_draws_boxes_on_grey_and_rgb() -> None:
    grey = np.full((120, 160), 30, np.uint8)
    box = Box(x=40, y=30, width=60, height=40, score=0.93)
    plain = decode(encode_snapshot_jpeg(grey, []))
    drawn = decode(encode_snapshot_jpeg(grey, [box]))
    assert plain.shape == drawn.shape == (120, 160, 3)
    # The outline is green on the box edge; the inside and far corners are untouched.
    edge = drawn[30, 60]
    assert edge[1] > 150 and edge[0] < 100 and edge[2] < 100
    assert np.abs(drawn[55, 70] - plain[55, 70]).max() < 20
    assert np.abs(drawn[110, 150] - plain[110, 150]).max() < 20
    # The score is written just above the box.
    assert np.abs(drawn[18:30, 40:70] - plain[18:30, 40:70]).max() > 100

    rgb = np.zeros((50, 80, 3), np.uint8)
    rgb[..., 0] = 200
    out = decode(encode_snapshot_jpeg(rgb, [Box(-10, -5, 30, 20, 0.5), Box(500, 500, 10, 10, 0.5)]))
    assert out.shape == (50, 80, 3) and out[40, 60, 0] > 150  # red kept, off-image box ignored


@pytest.mark.parametrize(
    "bad",
    [np.zeros((10, 10), np.float32), np.zeros((10, 10, 4), np.uint8), np.zeros(10, np.uint8)],
)
def test_snapshot_jpeg_rejects_other_arrays(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="snapshot image"):
        encode_snapshot_jpeg(bad, [])


# --- hardening: connection cap, timeouts, Server header, token ---------------------------------

import edge.http_server as http_server  # noqa: E402 - grouped with the tests that patch it


def raw_request(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send `data` as is and return everything the server answers before closing."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the server has closed `sock` (EOF or reset); False while it stays open."""
    sock.setblocking(False)
    try:
        data = sock.recv(4096)
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)
    return data == b"" or data.startswith(b"HTTP/1.0 408")


def test_server_header_does_not_give_away_the_python_version(served: tuple[HttpServer, State, Metrics]) -> None:
    server, _, _ = served
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as r:
        assert r.headers["Server"] == "car-detector"
    assert b"Python" not in raw_request(server.port, b"BREW /pot HTTP/1.0\r\n\r\n")  # stdlib error page too


def test_hundreds_of_idle_connections_cost_no_thread_and_never_lock_out_healthz(
    served: tuple[HttpServer, State, Metrics],
) -> None:
    """The unit's TasksMax=128 was exhausted by ~120 idle sockets (a thread each)."""
    server, _, _ = served
    threads_before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(300)]
    try:
        time.sleep(0.3)
        assert threading.active_count() <= threads_before + 1
        assert server.open_connections <= http_server.MAX_CONNECTIONS
        t0 = time.monotonic()
        assert get(server, "/healthz")[0] == 200  # the newest connection wins over the idlers
        assert time.monotonic() - t0 < 1.0
        assert sum(closed_by_peer(s) for s in idle) >= 300 - http_server.MAX_CONNECTIONS
    finally:
        for s in idle:
            s.close()


def test_idle_and_trickling_clients_are_dropped_after_the_request_timeout(
    served: tuple[HttpServer, State, Metrics], monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, _, _ = served
    monkeypatch.setattr(http_server, "REQUEST_TIMEOUT_S", 0.5)
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        slow.sendall(b"GET /healthz HTTP/1.0\r\n")
        t0 = time.monotonic()
        slow_closed_at = None
        while time.monotonic() - t0 < 3.0 and slow_closed_at is None:  # slowloris: a header byte per 0.1 s
            try:
                slow.sendall(b"X")
            except OSError:
                slow_closed_at = time.monotonic() - t0
                break
            if closed_by_peer(slow):
                slow_closed_at = time.monotonic() - t0
            time.sleep(0.1)
        assert slow_closed_at is not None and slow_closed_at < 1.5, "trickling bytes must not extend the deadline"
        assert closed_by_peer(idle)
    finally:
        idle.close()
        slow.close()
    assert get(server, "/healthz")[0] == 200


def test_oversized_request_is_413(served: tuple[HttpServer, State, Metrics]) -> None:
    server, _, _ = served
    answer = raw_request(server.port, b"GET /healthz HTTP/1.0\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 413")


TOKEN = "s3cret-token-0123456789"


def fetch(port: int, path: str, method: str = "GET", token: str | None = None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=b"{}" if method not in ("GET", "HEAD") else None)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def start(host: str, token: str = "") -> tuple[HttpServer, State]:
    state = State()
    server = HttpServer(HttpConfig(host=host, port=0, token=token), Metrics(), state.health, state.snapshot)
    server.start()
    return server, state


def test_non_loopback_bind_needs_the_token_for_everything_but_healthz() -> None:
    server, _ = start("0.0.0.0", TOKEN)
    try:
        assert fetch(server.port, "/healthz")[0] == 200  # probes carry no token
        for path in ("/metrics", "/snapshot.jpg", "/nope"):
            for sent in (None, "wrong-token-wrong-token", TOKEN[:-1]):
                code, body, headers = fetch(server.port, path, token=sent)
                assert code == 401, (path, sent)
                assert "Bearer" in headers["WWW-Authenticate"]
                assert TOKEN.encode() not in body and (sent is None or sent.encode() not in body)
        assert fetch(server.port, "/metrics", token=TOKEN)[0] == 200
        assert fetch(server.port, "/snapshot.jpg", token=TOKEN)[0] == 503  # served: no frame yet
        assert fetch(server.port, "/nope", token=TOKEN)[0] == 404
    finally:
        server.stop()


@pytest.mark.parametrize("token", ["", TOKEN])
def test_writes_need_the_token_even_on_loopback(token: str) -> None:
    server, _ = start("127.0.0.1", token)
    try:
        assert fetch(server.port, "/metrics")[0] == 200  # reads stay open on loopback
        for method in ("POST", "PUT", "DELETE"):
            code, body, _ = fetch(server.port, "/healthz", method=method, token="not-the-token-at-all")
            assert code == 401 and b"not-the-token" not in body
            code, _, _ = fetch(server.port, "/healthz", method=method)
            assert code == 401
        if token:  # the right token passes the gate; there is no write page yet
            code, _, headers = fetch(server.port, "/healthz", method="POST", token=token)
            assert code == 405 and headers["Allow"] == "GET, HEAD"
    finally:
        server.stop()
