"""firmware_config/car-detector.service: the hardened systemd unit the deploy installs.

Checked three ways: parsed here against the daemon's own contracts (notify + watchdog
versus the default config's frame timeout, console script, writable paths), by
`systemd-analyze verify`, and by `systemd-analyze security`'s exposure score so that a
later edit cannot quietly drop the hardening.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path, PurePosixPath

import pytest

from edge.config import load_config

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "firmware_config" / "car-detector.service"
CONFIG = REPO / "firmware_config" / "config.toml"
EXEC_START = "/opt/car-detector/venv/bin/car-detector run --config /etc/car-detector/config.toml"

Unit = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Unit:
    """Sections -> key -> every value (DeviceAllow= and friends may repeat)."""
    unit: Unit = {}
    section = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            unit.setdefault(section, {})
            continue
        assert section is not None, f"line {number}: {raw!r} is outside any section"
        assert "=" in line, f"line {number}: {raw!r} is not key=value"
        key, _, value = line.partition("=")
        unit[section].setdefault(key.strip(), []).append(value.strip())
    return unit


def one(unit: Unit, section: str, key: str) -> str:
    values = unit.get(section, {}).get(key)
    assert values, f"[{section}] {key}= missing"
    assert len(values) == 1, f"[{section}] {key}= set {len(values)} times: {values}"
    return values[0]


_SPAN = {"us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60,
         "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600}


def seconds(span: str) -> float:
    """systemd time span ("30s", "10min", "1min 30s", "45") in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span)
    assert parts and "".join(n + u for n, u in parts) == span.replace(" ", ""), f"bad time span {span!r}"
    return sum(float(n) * _SPAN[u or "s"] for n, u in parts)


def size_bytes(size: str) -> int:
    m = re.fullmatch(r"(\d+)([KMGT]?)", size)
    assert m, f"bad size {size!r}"
    return int(m.group(1)) * 1024 ** "_KMGT".index(m.group(2) or "_")


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT.read_text())


def test_notify_service_runs_the_console_script(unit: Unit) -> None:
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") == "main"
    assert one(unit, "Service", "ExecStart") == EXEC_START
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["car-detector"] == "edge.cli:main", "ExecStart calls the `car-detector` console script"
    assert one(unit, "Service", "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(unit, "Service", "SyslogIdentifier") == "car-detector"
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_watchdog_outlives_the_daemons_frame_timeout(unit: Unit) -> None:
    """The daemon stops sending WATCHDOG=1 after watchdog.frame_timeout_s without a frame;
    systemd must not kill it before that, so WatchdogSec= has to be strictly larger."""
    watchdog = seconds(one(unit, "Service", "WatchdogSec"))
    frame_timeout = load_config(CONFIG).watchdog.frame_timeout_s
    assert watchdog > frame_timeout, f"WatchdogSec={watchdog}s must exceed frame_timeout_s={frame_timeout}s"
    # Starting takes model load + preflight + camera; the stop gets a bounded grace period.
    assert seconds(one(unit, "Service", "TimeoutStartSec")) >= watchdog
    assert 0 < seconds(one(unit, "Service", "TimeoutStopSec")) <= 60


def test_restarts_on_failure_with_a_start_rate_limit_in_unit_section(unit: Unit) -> None:
    assert one(unit, "Service", "Restart") == "on-failure"
    assert seconds(one(unit, "Service", "RestartSec")) >= 1
    # systemd only honours the start limit in [Unit]; in [Service] it is ignored (with a warning).
    assert "StartLimitIntervalSec" not in unit["Service"] and "StartLimitBurst" not in unit["Service"]
    interval = seconds(one(unit, "Unit", "StartLimitIntervalSec"))
    burst = int(one(unit, "Unit", "StartLimitBurst"))
    restart = seconds(one(unit, "Service", "RestartSec"))
    assert burst >= 2 and interval > burst * restart, "the limit must be reachable by a crash loop"


def test_runs_as_unprivileged_user_in_video_group(unit: Unit) -> None:
    assert one(unit, "Service", "User") == "car-detector"
    assert "video" in one(unit, "Service", "SupplementaryGroups").split()
    assert one(unit, "Service", "NoNewPrivileges") == "yes"
    assert one(unit, "Service", "CapabilityBoundingSet") == ""
    assert "PrivateUsers" not in unit["Service"], "PrivateUsers would unmap the video group"


def test_filesystem_read_only_except_the_state_directory(unit: Unit) -> None:
    svc = unit["Service"]
    assert one(unit, "Service", "ProtectSystem") == "strict"
    assert one(unit, "Service", "ProtectHome") == "yes"
    assert one(unit, "Service", "PrivateTmp") == "yes"
    assert svc["ReadWritePaths"] == ["/var/lib/car-detector"]
    assert one(unit, "Service", "StateDirectory") == "car-detector"


def test_every_path_the_default_config_writes_is_writable(unit: Unit) -> None:
    writable = [PurePosixPath(p) for p in unit["Service"]["ReadWritePaths"]]
    cfg = load_config(CONFIG)
    for key, path in {"events.path": cfg.events.path, "capture.dir": cfg.capture.dir,
                      "mqtt.queue_path": cfg.mqtt.queue_path, "model.path": cfg.model.path}.items():
        p = PurePosixPath(path)
        assert any(p == w or w in p.parents for w in writable), f"{key} = {path} is outside ReadWritePaths"


def test_devices_are_limited_to_what_libcamera_opens(unit: Unit) -> None:
    assert one(unit, "Service", "DevicePolicy") == "closed"
    assert "PrivateDevices" not in unit["Service"], "PrivateDevices would hide the camera nodes"
    allowed = set(unit["Service"]["DeviceAllow"])
    # /proc/devices names: video4linux covers /dev/video* and /dev/v4l-subdev*, media the
    # /dev/media* controllers, dma_heap /dev/dma_heap/* (libcamera's buffer allocator).
    assert allowed == {"char-video4linux rw", "char-media rw", "char-dma_heap rw"}
    families = one(unit, "Service", "RestrictAddressFamilies").split()
    assert "AF_NETLINK" in families, "libcamera's udev monitor needs netlink"
    assert one(unit, "Service", "SystemCallFilter") == "@system-service"


def test_resource_limits_fit_a_small_pi(unit: Unit) -> None:
    memory_max = size_bytes(one(unit, "Service", "MemoryMax"))
    assert 128 << 20 <= memory_max <= 512 << 20, "a Pi Zero 2 W has 512 MB in all"
    assert size_bytes(one(unit, "Service", "MemoryHigh")) < memory_max
    quota = one(unit, "Service", "CPUQuota")
    assert quota.endswith("%") and 50 <= int(quota[:-1]) <= 400


def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    if not os.path.exists(path):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "systemd"], env=env, capture_output=True, timeout=300)
    if not os.path.exists(path):
        pytest.fail("systemd-analyze is missing and `apt-get install systemd` did not provide it")
    return path


def verifiable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at an executable that exists on this machine.

    Without systemd as PID 1 (CI containers) `systemd-analyze verify` still insists that
    ExecStart's binary exists, and /opt/car-detector/venv only exists on a deployed Pi.
    Everything else in the unit is verified unchanged.
    """
    text = UNIT.read_text()
    assert f"ExecStart={EXEC_START}\n" in text
    copy = tmp_path / "car-detector.service"
    copy.write_text(text.replace(f"ExecStart={EXEC_START.split()[0]}", "ExecStart=/bin/true"))
    return copy


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    copy = verifiable_copy(tmp_path)
    result = subprocess.run([analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True,
                            timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Unknown keys and bad values are only warnings (exit 0) that name the file: none allowed.
    assert str(copy) not in output and "car-detector.service:" not in output, output


def test_systemd_analyze_security_exposure_stays_low(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    copy = verifiable_copy(tmp_path)
    result = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(copy)],
                            capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for car-detector\.service: (\d+\.\d+)", result.stdout + result.stderr)
    assert m, result.stdout[-2000:] + result.stderr[-2000:]
    assert float(m.group(1)) <= 2.5, f"exposure {m.group(1)} (was 1.9): a hardening option was dropped?"
