"""The page against a real daemon (in-process, real video, real HTTP on 127.0.0.1), and in a
real headless Chromium driven by Selenium: draw a zone and see the daemon run with it, label
a captured frame, export the YOLO folder."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.capture_store import CaptureStore
from edge.config import load_config

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "page-test-token-0123456789"
CONFIG_HEAD = """# The user's own comments: the page must never rewrite this file.
zones_file = "zones.toml"  # the page writes the zones there

[camera]
id = "cam1"  # kept as typed
"""


class Running:
    """A Daemon running its frame loop in a thread, with the page on a free port."""

    def __init__(self, daemon: Any, thread: threading.Thread, root: Path) -> None:
        self.d, self.thread, self.root = daemon, thread, root

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.d.http.port}"

    def request(self, method: str, path: str, body: Any = None, token: str | None = TOKEN,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw, ctype = r.read(), r.headers["Content-Type"]
                code = r.status
        except urllib.error.HTTPError as e:
            raw, ctype, code = e.read(), e.headers["Content-Type"], e.code
        return code, (json.loads(raw) if ctype == "application/json" else raw)


def _write_config(root: Path, model_dir: Path, video: Path) -> Path:
    cfg = root / "config.toml"
    cfg.write_text(CONFIG_HEAD + f"""
[model]
path = "{model_dir}"

[source]
kind = "video"
path = "{video}"
fps = 10.0

[decide]
frames_in = 2
frames_out = 3

[latency]
log_every_s = 0.5

[events]
path = "{root / 'events.jsonl'}"

[capture]
dir = "{root / 'capture'}"

[http]
port = 0
token = "{TOKEN}"
""")
    (root / "zones.toml").write_text("[zones.kept]\nx = 0\ny = 0\nwidth = 320\nheight = 240\n")
    return cfg


def _fill_captures(run: Running, n: int = 3) -> list[str]:
    """Real frames from the running daemon, with its boxes as proposals, into the capture folder."""
    store = CaptureStore(Path(run.d.cfg.capture.dir), 50_000_000)
    ids = []
    for i in range(n):
        image, boxes = run.d.pipeline.snapshot_frame()
        proposals = [{**b.to_dict(), "source": "model"} for b in boxes] + [
            {"x": 250.0, "y": 210.0, "width": 100.0, "height": 40.0, "score": 0.42, "source": "motion"}]
        ids.append(store.add(image, 1_800_000_000.0 + i, i, "periodic", 0.5, proposals))
        time.sleep(0.15)
    return ids


@pytest.fixture
def running(trained_model_dir: Path, video_path: Path, tmp_path: Path) -> Iterator[Running]:
    from edge.daemon import Daemon

    cfg_path = _write_config(tmp_path, trained_model_dir, video_path)
    d = Daemon(load_config(cfg_path), cfg_path)
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.setdefault("rc", d.run()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while (d.http is None or d.pipeline.snapshot_frame() is None) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert d.pipeline.snapshot_frame() is not None, "the daemon processed no frame within 30 s"
    run = Running(d, thread, tmp_path)
    try:
        yield run
    finally:
        d.stop_event.set()
        thread.join(timeout=10)
    assert result.get("rc") == 0


def _wait(cond, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ------------------------------------------------------------------------------ HTTP level

def test_status_live_view_and_the_page_shell(running: Running) -> None:
    code, status = running.request("GET", "/api/status", token=None)
    assert code == 200
    assert status["model"]["sha256"] and status["model"]["runtime"] and status["model"]["name"]
    assert status["frames"] > 0 and status["writes"] == "token"
    assert {"total", "infer", "frame_age"} <= set(status["stages_ms"])
    assert set(status["stages_ms"]["total"]) == {"p50", "p95"}
    code, jpeg = running.request("GET", "/api/live.jpg", token=None)
    assert code == 200 and jpeg[:2] == b"\xff\xd8"
    for path, kind in (("/", b"<!doctype html>"), ("/page.js", b'"use strict"'), ("/page.css", b"body")):
        code, body = running.request("GET", path, token=None)
        assert code == 200 and kind in body


@pytest.mark.parametrize("path", [
    "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/api/captures/..%2f..%2fetc%2fpasswd/image",
    "/api/captures/%2e%2e/image", "/api/captures/%2Fetc%2Fpasswd/image", "/api/events/..%2f..%2fpasswd",
    "/page.js/../../../etc/passwd", "/api/captures/20260101-120000-000-00000001%00/image",
    "//etc/passwd", "/api/../../../etc/passwd",
])
def test_no_path_leaves_the_page_data(running: Running, path: str) -> None:
    code, body = running.request("GET", path)
    assert code in (400, 404), (path, code)
    assert b"root:" not in (body if isinstance(body, bytes) else json.dumps(body).encode())


def test_a_symlinked_capture_is_refused(running: Running, tmp_path: Path) -> None:
    (cid,) = _fill_captures(running, 1)
    folder = Path(running.d.cfg.capture.dir)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG not yours")
    fake = "20270101-000000-000-00000099"
    (folder / f"{fake}.png").symlink_to(secret)
    shutil.copy(folder / f"{cid}.json", folder / f"{fake}.json")
    code, body = running.request("GET", f"/api/captures/{fake}/image")
    assert code in (400, 403, 404) and b"not yours" not in json.dumps(body).encode()
    code, body = running.request("GET", f"/api/captures/{cid}/image")
    assert code == 200 and body[:4] == b"\x89PNG"


def test_writes_need_the_token_and_are_rate_limited(running: Running) -> None:
    code, body = running.request("PUT", "/api/zones", {"zones": []}, token=None)
    assert code == 401 and "token" in body["error"]
    code, body = running.request("PUT", "/api/zones", {"zones": []}, token="wrong-token-wrong-token")
    assert code == 401
    codes = [running.request("POST", "/api/export", token=TOKEN)[0] for _ in range(40)]
    assert 429 in codes and codes[0] == 200, codes
    time.sleep(1.5)  # the bucket refills
    assert running.request("POST", "/api/export")[0] == 200


def test_a_foreign_host_name_is_refused_on_loopback(running: Running) -> None:
    """DNS rebinding: a page of evil.example resolving to 127.0.0.1 must not read the page's data."""
    code, _ = running.request("GET", "/api/status", headers={"Host": "evil.example:8080"})
    assert code == 421
    assert running.request("GET", "/api/status", headers={"Host": "localhost:8080"})[0] == 200


def test_saving_zones_writes_zones_toml_and_applies_them_keeping_presence(running: Running) -> None:
    d = running.d
    _wait(lambda: d.pipeline.decider.presence().get("kept") is not None, what="decider")
    d.pipeline.decider.states["kept"].present = True  # a car is parked in the kept zone
    main_before = (running.root / "config.toml").read_text()
    drive = [[10, 230], [120, 90], [200, 90], [150, 230]]
    code, body = running.request("PUT", "/api/zones", {"zones": [
        {"name": "kept", "x": 0, "y": 0, "width": 320, "height": 240},
        {"name": "drive", "points": drive}]})
    assert code == 202, body
    _wait(lambda: "drive" in d.cfg.zones, what="the reload")
    assert d.pipeline.decider.zones["drive"] == tuple(tuple(p) for p in drive)
    assert d.pipeline.decider.states["kept"].present is True  # carried over, no restart
    assert (running.root / "config.toml").read_text() == main_before  # comments untouched
    assert load_config(running.root / "config.toml").zones["drive"].points == drive
    code, zones = running.request("GET", "/api/zones", token=None)
    assert [z["name"] for z in zones["zones"]] == ["kept", "drive"] and zones["reloads"]["ok"] >= 1

    code, body = running.request("PUT", "/api/zones", {"zones": [
        {"name": "bow", "points": [[0, 0], [100, 100], [100, 0], [0, 100]]}]})
    assert code == 400 and "zones.bow.points" in body["error"] and "cross" in body["error"]
    code, body = running.request("PUT", "/api/zones", {"zones": [{"name": "a b", "x": 0, "y": 0, "width": 5,
                                                                  "height": 5}]})
    assert code == 400 and "name" in body["error"]
    assert "drive" in load_config(running.root / "config.toml").zones  # nothing bad was written


def test_labels_and_export_through_the_api(running: Running) -> None:
    ids = _fill_captures(running, 2)
    code, listing = running.request("GET", "/api/captures", token=None)
    assert [c["id"] for c in listing["captures"]] == ids
    code, item = running.request("PUT", f"/api/captures/{ids[0]}",
                                 {"labels": [{"x": 10, "y": 20, "width": 50, "height": 30}], "no_car": False})
    assert code == 200 and item["labels"] == [{"x": 10, "y": 20, "width": 50, "height": 30}]
    code, item = running.request("PUT", f"/api/captures/{ids[1]}", {"labels": [], "no_car": True})
    assert code == 200 and item["no_car"] is True
    code, bad = running.request("PUT", f"/api/captures/{ids[1]}", {"labels": [{"x": -5}], "no_car": False})
    assert code == 400
    code, summary = running.request("POST", "/api/export")
    assert code == 200 and summary["frames"] == 2 and summary["boxes"] == 1
    out = Path(summary["dest"])
    assert out == Path(running.d.cfg.capture.dir + "-yolo")
    assert (out / "labels" / f"{ids[0]}.txt").read_text().startswith("0 ")


def test_events_reach_the_page_from_the_frame_loop_with_a_thumbnail(running: Running) -> None:
    """A car parked in "kept" that the (empty) frames no longer show leaves after frames_out
    frames: the loop's car_left reaches the page with a crop around its last box."""
    from PIL import Image

    from edge.events import Box

    st = running.d.pipeline.decider.states["kept"]
    st.box, st.score, st.since = Box(40.0, 60.0, 80.0, 40.0, 0.7), 0.7, time.time()
    st.present = True  # last: the loop thread reads the state between frames
    _wait(lambda: running.request("GET", "/api/events")[1]["events"], timeout=30, what="an event")
    ev = next(e for e in running.request("GET", "/api/events")[1]["events"] if e["zone"] == "kept")
    assert (ev["event"], ev["score"]) == ("car_left", 0.7) and ev["box"]["x"] == 40.0
    code, jpeg = running.request("GET", ev["thumb"])
    assert code == 200 and jpeg[:2] == b"\xff\xd8"
    assert Image.open(io.BytesIO(jpeg)).size == (120, 60)  # the box and a quarter of it on each side
    assert running.request("GET", "/api/events/999999.jpg")[0] == 404


# ------------------------------------------------------------------------------ real browser

CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,900")


def _ensure_chromium() -> None:
    if Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium",
                        "chromium-driver"], check=True, env=env, capture_output=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.fail(f"chromium/chromium-driver are not installed and apt-get failed: {exc}")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    _ensure_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: Any, name: str) -> None:
    """Screenshots for the README when PAGE_SCREENSHOTS names a folder (docs/)."""
    folder = os.environ.get("PAGE_SCREENSHOTS")
    if folder:
        driver.save_screenshot(str(Path(folder) / name))


def test_in_chromium_draw_a_zone_label_a_frame_export(running: Running, browser: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    ids = _fill_captures(running, 3)
    wait = WebDriverWait(browser, 15)
    browser.get(running.url.replace("127.0.0.1", "localhost") + "/")
    wait.until(lambda b: b.find_element(By.ID, "stages").find_elements(By.TAG_NAME, "td"))
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
    wait.until(lambda b: b.find_element(By.ID, "model").text and "run" in b.find_element(By.ID, "model").text)

    # Live view + zone editor: draw a rectangle, rename it, save, see the daemon apply it.
    browser.find_element(By.CSS_SELECTOR, 'nav button[data-tab="zones"]').click()
    wait.until(lambda b: (b.find_element(By.ID, "live").get_attribute("src") or "").startswith("blob:"))
    svg = browser.find_element(By.ID, "z-svg")
    scale = svg.size["width"] / 320.0
    browser.find_element(By.ID, "z-rect").click()
    (ActionChains(browser).move_to_element_with_offset(svg, int(-140 * scale), int(-100 * scale)).click_and_hold()
     .move_by_offset(int(60 * scale), int(40 * scale)).move_by_offset(int(60 * scale), int(40 * scale))
     .release().perform())
    name = browser.find_element(By.ID, "z-name")
    name.clear()
    name.send_keys("gate")
    browser.find_element(By.ID, "z-save").click()
    wait.until(lambda b: b.find_element(By.ID, "z-state").text == "applied")
    gate = running.d.cfg.zones["gate"]
    assert abs(gate.x - 20) <= 3 and abs(gate.y - 20) <= 3 and abs(gate.width - 120) <= 3, gate
    assert "gate" in running.d.pipeline.decider.zones and "kept" in running.d.cfg.zones
    assert "gate" in [z["name"] for z in running.request("GET", "/api/zones")[1]["zones"]]

    def at(x: float, y: float) -> tuple[int, int]:  # processing pixels -> offset from the svg's centre
        return int((x - 160) * scale), int((y - 120) * scale)

    # A polygon (click the corners, double-click the last), then move and resize "gate", delete "kept".
    browser.find_element(By.ID, "z-poly").click()
    chain = ActionChains(browser)
    for x, y in ((200, 230), (230, 150), (290, 150)):
        chain.move_to_element_with_offset(svg, *at(x, y)).click()
    chain.move_to_element_with_offset(svg, *at(300, 230)).double_click().perform()
    name.clear()
    name.send_keys("drive")
    (ActionChains(browser).move_to_element_with_offset(svg, *at(gate.x + 30, gate.y + 30)).click_and_hold()
     .move_by_offset(int(5 * scale), int(5 * scale)).move_by_offset(int(5 * scale), int(5 * scale)).release()
     .perform())  # move by (10, 10)
    corner = at(gate.x + 10 + gate.width, gate.y + 10 + gate.height)
    (ActionChains(browser).move_to_element_with_offset(svg, *corner).click_and_hold()
     .move_by_offset(int(10 * scale), 0).move_by_offset(int(10 * scale), 0).release().perform())  # 20 wider
    ActionChains(browser).move_to_element_with_offset(svg, *at(150, 220)).click().perform()  # only "kept" there
    assert name.get_attribute("value") == "kept"
    ActionChains(browser).send_keys(Keys.DELETE).perform()
    browser.find_element(By.ID, "z-save").click()
    wait.until(lambda b: b.find_element(By.ID, "z-state").text == "applied")
    zones = running.d.cfg.zones
    assert sorted(zones) == ["drive", "gate"]
    moved = zones["gate"]
    assert (abs(moved.x - gate.x - 10), abs(moved.y - gate.y - 10), abs(moved.width - gate.width - 20)) <= (2, 2, 3)
    assert moved.height == gate.height
    assert len(zones["drive"].points) == 4
    for (x, y), want in zip(zones["drive"].points, ((200, 230), (230, 150), (290, 150), (300, 230))):
        assert abs(x - want[0]) <= 2 and abs(y - want[1]) <= 2
    assert set(running.d.pipeline.decider.zones) == {"drive", "gate"}
    _shot(browser, "page-zones.png")

    # Labelling: accept the proposals (A), save (S), mark the next "no car" (N, S), export.
    browser.find_element(By.CSS_SELECTOR, 'nav button[data-tab="label"]').click()
    wait.until(lambda b: (b.find_element(By.ID, "l-img").get_attribute("src") or "").startswith("blob:"))
    wait.until(lambda b: "not labelled yet" in b.find_element(By.ID, "l-state").text)
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys("a")
    body.send_keys("s")
    wait.until(lambda b: ": saved" in b.find_element(By.ID, "l-state").text)
    first = CaptureStore(Path(running.d.cfg.capture.dir), 50_000_000).get(ids[0])
    assert first["labels"] and len(first["labels"]) == len(first["proposals"])
    for box in first["labels"]:  # proposals cut by the border are clipped to the picture
        assert box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= 320 and box["y"] + box["height"] <= 240
    _shot(browser, "page-labelling.png")
    body.send_keys("j")
    wait.until(lambda b: ids[1] in b.find_element(By.ID, "l-state").text)
    body.send_keys("n")
    body.send_keys("s")
    wait.until(lambda b: ": saved" in b.find_element(By.ID, "l-state").text)
    second = CaptureStore(Path(running.d.cfg.capture.dir), 50_000_000).get(ids[1])
    assert second["no_car"] is True and second["labels"] == []
    body.send_keys("j")  # the third: draw a box by hand, then move it
    wait.until(lambda b: ids[2] in b.find_element(By.ID, "l-state").text)
    lsvg = browser.find_element(By.ID, "l-svg")
    lscale = lsvg.size["width"] / 320.0

    def lat(x: float, y: float) -> tuple[int, int]:
        return int((x - 160) * lscale), int((y - 120) * lscale)

    (ActionChains(browser).move_to_element_with_offset(lsvg, *lat(40, 40)).click_and_hold()
     .move_by_offset(int(30 * lscale), int(25 * lscale)).move_by_offset(int(30 * lscale), int(25 * lscale))
     .release().perform())
    (ActionChains(browser).move_to_element_with_offset(lsvg, *lat(70, 65)).click_and_hold()
     .move_by_offset(int(10 * lscale), 0).move_by_offset(int(10 * lscale), 0).release().perform())
    body.send_keys("s")
    wait.until(lambda b: ": saved" in b.find_element(By.ID, "l-state").text)
    (box,) = CaptureStore(Path(running.d.cfg.capture.dir), 50_000_000).get(ids[2])["labels"]
    assert [abs(box[k] - v) <= 2 for k, v in (("x", 60), ("y", 40), ("width", 60), ("height", 50))] == [True] * 4
    browser.find_element(By.ID, "l-export").click()
    wait.until(lambda b: "frames" in b.find_element(By.ID, "l-export-out").text)
    assert "3 frames" in browser.find_element(By.ID, "l-export-out").text
    assert sorted(p.name for p in Path(running.d.cfg.capture.dir + "-yolo", "labels").iterdir()) == [
        f"{i}.txt" for i in ids]
    browser.find_element(By.CSS_SELECTOR, 'nav button[data-tab="status"]').click()
    wait.until(lambda b: b.find_element(By.ID, "chart").find_elements(By.TAG_NAME, "polyline"))
    _shot(browser, "page-status.png")


def test_page_bench_runs_and_reports_the_figures(trained_model_dir: Path, tmp_path: Path) -> None:
    """The measuring command itself (its figures are quoted in the README, not asserted here)."""
    from edge.page_bench import main

    out = tmp_path / "bench.json"
    assert main(["--model", str(trained_model_dir), "--seconds", "1.5", "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert set(got["windows"]) == {"no page (1)", "page open", "no page (2)"}
    assert all(w["fps"] > 0 for w in got["windows"].values())
    assert got["mjpeg_instead"]["encode_p50_ms"] > 0


def test_without_a_token_the_page_is_read_only_and_says_how_to_set_one(trained_model_dir: Path, video_path: Path,
                                                                         tmp_path: Path) -> None:
    """Loopback with no http.token: reads work, every write is refused naming http.token."""
    from edge.daemon import Daemon
    from edge.http_server import HttpServer
    from edge.page import Page

    cfg_path = _write_config(tmp_path, trained_model_dir, video_path)
    cfg_path.write_text(cfg_path.read_text().replace(f'token = "{TOKEN}"\n', ""))
    d = Daemon(load_config(cfg_path), cfg_path)
    d.page = Page(d, loopback_only=True)
    d.http = HttpServer(d.cfg.http, d.metrics, d.health, d.snapshot_jpeg, page=d.page)
    d.http.start()
    try:
        run = Running(d, threading.Thread(), tmp_path)
        code, status = run.request("GET", "/api/status", token=None)
        assert code == 200 and "http.token" in status["writes"]
        assert run.request("GET", "/api/live.jpg", token=None)[0] == 503  # no frame yet, said so
        for method, path in (("PUT", "/api/zones"), ("POST", "/api/export"), ("PUT", "/api/captures/x")):
            code, body = run.request(method, path, {"zones": []}, token=None)
            assert code == 401 and "http.token" in body["error"], (method, path, body)
        assert not (tmp_path / "capture-yolo").exists()
        assert (tmp_path / "zones.toml").read_text().startswith("[zones.kept]")  # untouched
    finally:
        d.http.stop()
        d.publisher.close()
