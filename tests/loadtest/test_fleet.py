"""The fleet harness for real: daemons, mosquitto and the recorder as processes, a broker
SIGKILL in the middle, and nothing left running afterwards, however the harness ends.

`make fleet-test` (50 daemons, three phases, two broker kills each) is a command; these
runs are the same code with 3 daemons and one kill.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loadtest.procs import processes_of_run

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(180)]


def fleet_cmd(model: Path, video: Path, workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "loadtest", "--model", str(model), "--video", str(video),
            "--workdir", str(workdir), *args]


def test_three_daemons_lose_nothing_across_a_broker_kill(trained_model_dir: Path, video_path: Path,
                                                         tmp_path: Path, firing_threshold: float) -> None:
    report_path = tmp_path / "fleet.json"
    cmd = fleet_cmd(trained_model_dir, video_path, tmp_path / "run", "--phases", "3", "--duration", "34",
                    "--broker-kills", "1", "--outage", "2", "--json", str(report_path),
                    "--threshold", str(firing_threshold))
    # 34 s: one loop of the 2 fps clip, so every zone the probe chose changes at least once
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(report_path.read_text())
    (phase,) = report["phases"]
    assert phase["daemons"] == 3 and len(phase["broker_kills"]) == 1
    cams = phase["cameras"]
    assert {c["camera"] for c in cams} == {"cam-01", "cam-02", "cam-03"}
    assert len({c["events_topic"] for c in cams}) == 3  # one camera id, one topic tree each
    for c in cams:
        assert c["produced"] > 0, f"{c['camera']} produced no event (probe: {report['probe']})"
        assert c["lost"] == 0 and c["unexpected"] == 0 and c["in_order"], c
        assert c["delivered"] == c["produced"]
        assert c["duplicates"] >= 0  # counted; QoS 1 allows them
        assert len(c["reconnect_s"]) == 1 and 0 <= c["reconnect_s"][0] < 30, c
        assert c["exit_code"] == 0 and not c["needed_sigkill"]
        assert c["rss_mb"] > 0 and c["frame_age_p95_ms"] is not None
    assert phase["broker"]["peak_rss_mb"] > 0 and phase["broker"]["cpu_s"] >= 0
    assert report["ok"] and report["left_behind"] == []
    assert processes_of_run(report["run_id"]) == []
    assert "| lost | 0 |" in proc.stdout  # the printed table


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_harness_leaves_no_process_behind(trained_model_dir: Path, video_path: Path, tmp_path: Path,
                                                    sig: signal.Signals) -> None:
    """SIGTERM: the handlers end every process group; SIGKILL: no handler runs, the
    children's parent-death signal ends them."""
    cmd = fleet_cmd(trained_model_dir, video_path, tmp_path / "run", "--phases", "2", "--duration", "120")
    harness = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert harness.stdout is not None
        first = harness.stdout.readline()
        match = re.match(r"fleet test (\w+):", first)
        assert match, first
        run_id = match.group(1)
        deadline = time.monotonic() + 60
        while len(processes_of_run(run_id)) < 3:  # the broker and both daemons
            assert harness.poll() is None and time.monotonic() < deadline, "the phase never started"
            time.sleep(0.2)
        harness.send_signal(sig)
        rc = harness.wait(timeout=30)
        assert rc == (130 if sig == signal.SIGTERM else -signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (left := processes_of_run(run_id)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left == [], f"left running after {sig.name}: {left}"
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
