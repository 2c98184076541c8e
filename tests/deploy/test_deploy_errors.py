"""Every refusal of `make deploy` says what, where and what to do, exits non-zero and leaves
the Pi as it was. Same real ssh target and fakes as test_deploy.py (see conftest.py)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO, Deployment, ensure_binary, explain, free_port, snapshot

pytestmark = pytest.mark.ssh


def assert_refused(result: subprocess.CompletedProcess[str], code: int, *phrases: str) -> None:
    assert result.returncode == code, explain(result)
    assert "ERROR" in result.stderr and "what to do:" in result.stderr, explain(result)
    for phrase in phrases:
        assert phrase in result.stderr, f"{phrase!r} missing from the error:\n{result.stderr}"


# ---------------------------------------------------------------------------- workstation side

def test_pi_not_set(deployed: Deployment) -> None:
    assert_refused(deployed.deploy(PI=None), 2, "PI is not set", "make deploy PI=pi@raspberrypi.local")


def test_model_dir_without_manifest(deployed: Deployment, tmp_path: Path) -> None:
    assert_refused(deployed.deploy(MODEL=str(tmp_path)), 2, "has no manifest.json", "make train")


def test_manifest_naming_a_missing_file(deployed: Deployment, tmp_path: Path) -> None:
    shutil.copytree(deployed.model_dir, tmp_path / "model")
    (tmp_path / "model" / "model_int8.tflite").unlink()
    result = deployed.deploy(MODEL=str(tmp_path / "model"))
    assert_refused(result, 2, "models.int8.file", "model_int8.tflite", "missing")


def test_unreachable_host(deployed: Deployment) -> None:
    closed = f"{deployed.pi.ssh_opts.rsplit('-p', 1)[0]} -p {free_port()}"
    result = deployed.deploy(SSH_OPTS=closed)
    assert_refused(result, 7, f"cannot reach {deployed.pi.pi} over ssh", "Connection refused", "SSH_OPTS='-p PORT'")


def test_no_passwordless_sudo_is_refused_before_anything_runs() -> None:
    """The exact command deploy.sh sends over ssh, run as an unprivileged user (nobody)
    whose `sudo -n true` fails: we cannot log in over ssh as a user without a shell."""
    if os.geteuid() != 0:
        pytest.skip("switching to the nobody user needs root")
    ensure_binary("/usr/bin/sudo", "sudo")

    def remote(command: str, pi_root: str = "") -> str:
        script = f". deploy/lib.sh; PI_ROOT={pi_root}; remote_root_cmd {command}"
        return subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout

    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "bash", "-c"]
    refused = subprocess.run([*as_nobody, remote("touch /tmp/should-not-exist-car-detector")],
                             capture_output=True, text=True, timeout=60)
    assert_refused(refused, 3, "user nobody cannot use sudo without a password", "sudo -n true failed",
                   "NOPASSWD")
    assert not Path("/tmp/should-not-exist-car-detector").exists()
    # The same command as root runs directly, and under PI_ROOT nobody needs no sudo.
    assert subprocess.run(["bash", "-c", remote("true")], timeout=60).returncode == 0
    assert subprocess.run([*as_nobody, remote("true", "/tmp/prefix")], timeout=60).returncode == 0


def test_install_script_refuses_to_run_unprivileged_on_the_real_root(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("switching to the nobody user needs root")
    result = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                             "bash", str(REPO / "deploy/install.sh"), str(tmp_path)],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "PI_ROOT": ""})
    assert_refused(result, 3, "must run as root (running as nobody)")


# ---------------------------------------------------------------------------- Pi-side checks

def test_unsupported_architecture(deployed: Deployment) -> None:
    if platform.machine() in ("aarch64", "armv7l"):
        pytest.skip("this machine is a supported architecture")
    before = snapshot(deployed.root)
    result = deployed.deploy(CAR_DETECTOR_ALLOW_ANY_ARCH=None)
    assert_refused(result, 6, f"unsupported architecture {platform.machine()}", "aarch64",
                   "CAR_DETECTOR_ALLOW_ANY_ARCH=1")
    assert snapshot(deployed.root) == before


def test_python_too_old(deployed: Deployment, tmp_path: Path) -> None:
    old = tmp_path / "python3.9"
    old.write_text("#!/bin/sh\necho 3.9\n")
    old.chmod(0o755)
    result = deployed.deploy(CAR_DETECTOR_PYTHON=str(old))
    assert_refused(result, 6, "Python 3.9", "too old", "Bookworm")


def test_not_enough_disk(deployed: Deployment) -> None:
    before = snapshot(deployed.root)
    result = deployed.deploy(CAR_DETECTOR_MIN_FREE_MB=str(10**9))
    assert_refused(result, 6, "MB free on", f"needs at least {10**9} MB", "apt clean")
    assert snapshot(deployed.root) == before


# ---------------------------------------------------------------------------- camera

def test_no_camera_is_fatal_for_the_picamera2_source(deployed: Deployment) -> None:
    before = snapshot(deployed.root)
    deployed.pi.queue_is_active("inactive")  # the service is not holding the camera
    try:
        result = deployed.deploy(CAR_DETECTOR_SKIP_CAMERA_CHECK=None)
    finally:
        deployed.pi.reset_fakes()
    assert_refused(result, 6, "no camera detected (rpicam-hello --list-cameras lists none)",
                   'source.kind = "picamera2"', "camera_auto_detect=1", "CAR_DETECTOR_SKIP_CAMERA_CHECK=1")
    assert snapshot(deployed.root) == before


def test_detected_camera_passes(deployed: Deployment) -> None:
    deployed.pi.queue_is_active("inactive")
    deployed.pi.set_cameras("imx708")
    try:
        result = deployed.deploy(CAR_DETECTOR_SKIP_CAMERA_CHECK=None, DRY_RUN="1")
    finally:
        deployed.pi.reset_fakes()
    assert result.returncode == 0, explain(result)
    assert "camera: imx708" in result.stdout


def test_running_service_is_not_asked_to_share_the_camera(deployed: Deployment) -> None:
    # is-active answers "active" by default: libcamera would not list a camera in use.
    result = deployed.deploy(CAR_DETECTOR_SKIP_CAMERA_CHECK=None, DRY_RUN="1")
    assert result.returncode == 0, explain(result)
    assert "holds the camera; not probing it" in result.stdout


def test_no_camera_only_warns_when_the_config_uses_another_source(deployed: Deployment) -> None:
    original = deployed.config.read_text()
    deployed.config.write_text(original.replace('kind = "picamera2"', 'kind = "synthetic"'))
    deployed.pi.queue_is_active("inactive")
    try:
        result = deployed.deploy(CAR_DETECTOR_SKIP_CAMERA_CHECK=None, DRY_RUN="1")
    finally:
        deployed.pi.reset_fakes()
        deployed.config.write_text(original)
    assert result.returncode == 0, explain(result)
    assert 'no camera detected' in result.stderr and 'fine because source.kind = "synthetic"' in result.stderr
