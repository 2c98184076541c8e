"""The deploy scripts run on two machines and over ssh, where a quoting slip becomes a
half-finished install: every one must pass `bash -n` and ShellCheck."""

from __future__ import annotations

import subprocess

from tests.deploy.conftest import REPO, ensure_binary

SCRIPTS = sorted((REPO / "deploy").rglob("*.sh")) + sorted((REPO / "tests" / "fakes" / "bin").iterdir())


def test_scripts_parse() -> None:
    assert len(SCRIPTS) >= 8, SCRIPTS
    for script in SCRIPTS:
        check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert check.returncode == 0, f"{script}: {check.stderr}"


def test_scripts_pass_shellcheck() -> None:
    shellcheck = ensure_binary("/usr/bin/shellcheck", "shellcheck")
    result = subprocess.run([shellcheck, "-x", *map(str, SCRIPTS)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
