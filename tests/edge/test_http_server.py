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
