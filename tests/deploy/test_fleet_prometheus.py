"""deploy/fleet/prometheus.py and deploy/fleet/grafana-dashboard.json, for real.

Debian's Prometheus runs on 127.0.0.1 with the config generated from an inventory, scrapes
two real daemons (the highway clip, HTTP on loopback) through the generated file-SD, and
every PromQL expression of the dashboard must return a series for every camera. Grafana
itself is not installable here; its queries are what can break, and Prometheus runs them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.conftest import ensure_binary, free_port
from tests.edge.test_daemon import Service, write_config

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "deploy" / "fleet" / "prometheus.py"
DASHBOARD = ROOT / "deploy" / "fleet" / "grafana-dashboard.json"
EXAMPLE = ROOT / "deploy" / "fleet" / "inventory.example.yml"
CAMERAS = ("cam-a", "cam-b")
SCRAPE_INTERVAL = "1s"
RATE_WINDOW = "15s"  # what Grafana would put for $__rate_interval at this scrape interval

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return ensure_binary("/usr/bin/prometheus", "prometheus")  # Debian's; installed when missing


@pytest.fixture(scope="session")
def promtool_bin(prometheus_bin: str) -> str:
    return ensure_binary("/usr/bin/promtool", "prometheus")


def generate(inventory: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(GENERATOR), str(inventory), "--out", str(out), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def write_inventory(path: Path, hosts: dict[str, dict[str, object]]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"all": {"vars": {"ansible_user": "pi"}, "hosts": hosts}}))
    return path


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target, with Grafana's variables as Grafana fills them
    for "All" cameras at this scrape interval."""
    dash = json.loads(DASHBOARD.read_text())
    (camera_var,) = [v for v in dash["templating"]["list"] if v["name"] == "camera"]
    out = []
    for panel in dash["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", RATE_WINDOW).replace("$camera", camera_var["allValue"])
            assert "$" not in expr, f"{panel['title']}: unknown Grafana variable in {expr}"
            out.append((panel["title"], expr))
    return out


# ------------------------------------------------------------------ generator, no daemons

def test_generated_config_from_the_example_inventory_passes_promtool(tmp_path: Path, promtool_bin: str) -> None:
    token = tmp_path / "token"
    token.write_text("0123456789abcdef0123\n")
    proc = generate(EXAMPLE, tmp_path / "out", "--token-file", str(token))
    assert proc.returncode == 0, proc.stderr
    check = subprocess.run([promtool_bin, "check", "config", str(tmp_path / "out" / "prometheus.yml")],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    groups = json.loads((tmp_path / "out" / "car-detector-targets.json").read_text())
    assert groups == [
        {"targets": ["192.168.1.21:8080"], "labels": {"camera": "driveway", "host": "driveway"}},
        {"targets": ["192.168.1.22:8080"], "labels": {"camera": "street", "host": "street"}},
    ]
    job = (tmp_path / "out" / "prometheus.yml").read_text()
    assert "credentials_file: " + str(token) in job and "honor_labels: true" in job


def test_group_vars_defaults_and_children(tmp_path: Path) -> None:
    import yaml

    inv = tmp_path / "inv.yml"
    inv.write_text(yaml.safe_dump({"all": {"vars": {"metrics_port": 9000}, "children": {
        "street": {"vars": {"metrics_port": 9100}, "hosts": {"pi-1": {"ansible_host": "10.0.0.1"},
                                                              "pi-2": {"metrics_port": 9200}}},
        "garage": {"hosts": {"pi-3": {"camera_id": "garage"}}}}}}))
    proc = generate(inv, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    groups = json.loads((tmp_path / "out" / "car-detector-targets.json").read_text())
    assert [(g["targets"], g["labels"]["camera"]) for g in groups] == [
        (["10.0.0.1:9100"], "pi-1"), (["pi-2:9200"], "pi-2"), (["pi-3:9000"], "garage")]


@pytest.mark.parametrize(("hosts", "named"), [
    ({"a": {"camera_id": "x"}, "b": {"camera_id": "x"}}, ["'a'", "'b'", "camera_id 'x'"]),
    ({"a": {"camera_id": "drive way"}}, ["host 'a'", "camera_id = 'drive way'"]),
    ({"a": {"metrics_port": 0}}, ["host 'a'", "metrics_port = 0"]),
    ({"a": {"metrics_port": "8080"}}, ["host 'a'", "metrics_port = '8080'"]),
    ({}, ["lists no hosts"]),
])
def test_a_bad_inventory_is_refused_naming_host_and_key(tmp_path: Path, hosts: dict, named: list[str]) -> None:
    out = tmp_path / "out"
    proc = generate(write_inventory(tmp_path / "inv.yml", hosts), out)
    assert proc.returncode == 2 and proc.stderr.startswith("error: "), proc.stderr
    assert all(n in proc.stderr for n in named), proc.stderr
    assert not out.exists() or not any(out.iterdir()), "nothing is written for a bad inventory"


def test_a_missing_or_broken_inventory_is_named(tmp_path: Path) -> None:
    proc = generate(tmp_path / "nope.yml", tmp_path / "out")
    assert proc.returncode == 2 and "nope.yml" in proc.stderr
    (tmp_path / "bad.yml").write_text("all: [unclosed\n")
    proc = generate(tmp_path / "bad.yml", tmp_path / "out")
    assert proc.returncode == 2 and "not valid YAML" in proc.stderr


# ------------------------------------------------------------------ the real thing

class Prometheus:
    """Debian's prometheus on 127.0.0.1 with its own data folder, stopped at the end."""

    def __init__(self, binary: str, config: Path, workdir: Path) -> None:
        self.port = free_port()
        self.log = workdir / "prometheus.log"
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=logf, stderr=logf)

    def get(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.loads(resp.read())

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"prometheus exited: {self.log.read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready in {timeout_s}s: {self.log.read_text()[-2000:]}")

    def query(self, expr: str) -> list[dict]:
        body = self.get("/api/v1/query", query=expr)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def daemons(trained_model_dir: Path, video_path: Path, tmp_path: Path) -> Iterator[dict[str, int]]:
    """Two real daemons on the highway clip, HTTP on 127.0.0.1: camera id -> metrics port."""
    services: list[Service] = []
    ports: dict[str, int] = {}
    try:
        for cam in CAMERAS:
            work = tmp_path / cam
            work.mkdir()
            cfg = write_config(work / "config.toml", trained_model_dir, work, video_path, camera={"id": cam},
                               processing={"threshold": 0.3}, decide={"frames_in": 1, "frames_out": 1},
                               http={"host": "127.0.0.1", "port": 0})
            services.append(Service(cfg, None))
        for cam, svc in zip(CAMERAS, services):
            ports[cam] = svc.wait_log("http listening")["port"]
            svc.wait_log("ready")
        yield ports
    finally:
        for svc in services:
            svc.stop()


def test_prometheus_scrapes_every_daemon_and_every_dashboard_query_has_each_camera(
        daemons: dict[str, int], tmp_path: Path, prometheus_bin: str, promtool_bin: str) -> None:
    inv = write_inventory(tmp_path / "inventory.yml", {
        f"pi-{cam}": {"ansible_host": "127.0.0.1", "camera_id": cam, "metrics_port": port}
        for cam, port in daemons.items()})
    out = tmp_path / "prom"
    proc = generate(inv, out, "--scrape-interval", SCRAPE_INTERVAL)
    assert proc.returncode == 0, proc.stderr
    check = subprocess.run([promtool_bin, "check", "config", str(out / "prometheus.yml")],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr

    prom = Prometheus(prometheus_bin, out / "prometheus.yml", tmp_path)
    try:
        prom.wait_ready()
        queries = [("targets up", 'up{job="car-detector"} == 1'), *dashboard_queries()]
        assert len(queries) >= 12, "the dashboard lost its panels"
        missing: dict[str, set[str]] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # rates need a few scrapes before they exist
            missing = {}
            for title, expr in queries:
                got = {r["metric"].get("camera") for r in prom.query(expr)}
                if lacking := set(CAMERAS) - got:
                    missing[f"{title}: {expr}"] = lacking
            if not missing:
                break
            time.sleep(2)
        assert not missing, "dashboard queries without a series for some camera:\n" + "\n".join(
            f"  {q} -> missing {sorted(c)}" for q, c in missing.items())

        targets = prom.get("/api/v1/targets")["data"]["activeTargets"]
        assert sorted((t["labels"]["camera"], t["health"]) for t in targets) == [(c, "up") for c in CAMERAS]
        # Every car_detector_* series can be split by camera (what `sum by (camera)` needs).
        names = prom.get("/api/v1/label/__name__/values")["data"]
        ours = [n for n in names if re.match(r"car_detector_", n)]
        assert len(ours) >= 10, ours
        for name in ours:
            assert {r["metric"].get("camera") for r in prom.query(f"count by (camera) ({name})")} == set(CAMERAS), name
        fps = {r["metric"]["camera"]: float(r["value"][1]) for r in prom.query("car_detector_fps")}
        assert all(v > 0 for v in fps.values()), fps
    finally:
        prom.stop()
