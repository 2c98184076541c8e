"""pisim's shell scripts run as root and rebuild folders with rm -rf: each must parse and
pass ShellCheck."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((REPO / "pisim").glob("*.sh"))


def _shellcheck() -> str:
    """ShellCheck, apt-installed on first use (CI machines start without it)."""
    found = shutil.which("shellcheck")
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "shellcheck"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.fail(f"shellcheck is missing and `{' '.join(cmd)}` failed: {done.stderr[-500:]}")
    return shutil.which("shellcheck") or pytest.fail("apt-get installed shellcheck but it is not on PATH")


def test_pisim_scripts_parse_and_pass_shellcheck() -> None:
    assert {p.name for p in SCRIPTS} >= {"run.sh", "build_rootfs.sh"}
    for script in SCRIPTS:
        check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert check.returncode == 0, f"{script}: {check.stderr}"
    shellcheck = _shellcheck()
    result = subprocess.run([shellcheck, "-x", *map(str, SCRIPTS)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
