"""`make deploy` / `make uninstall` end to end: deploy.sh on this machine ssh-ing into a real
sshd on 127.0.0.1 that plays the Pi, installing into a temporary PI_ROOT.

There is no systemd as PID 1 in the test container, so `systemctl` on the target is the
recording fake from tests/fakes/bin (its log tells which units were reloaded, enabled,
restarted; its `is-active` answers are queued by the test). Everything else is real: the
wheel build, the tar-over-ssh copy, the venv with pip installing the `edge` extra (offline,
from a wheelhouse, see conftest.py), the daemon's own `car-detector preflight` on the real
trained model, the symlink switches and the rollbacks.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO, Deployment, explain, snapshot

pytestmark = pytest.mark.ssh

FIRMWARE = REPO / "firmware_config"


def variant_model(src: Path, dest: Path, note: str) -> Path:
    """A different but valid model version: same files, a manifest with one more key."""
    shutil.copytree(src, dest)
    manifest = dest / "manifest.json"
    data = json.loads(manifest.read_text())
    data["deploy_test_note"] = note
    manifest.write_text(json.dumps(data, indent=2))
    return dest


def new_calls(dep: Deployment, before: int) -> list[str]:
    return dep.pi.systemctl_calls()[before:]


def deploy_tmp_dirs() -> set[str]:
    return {p.name for p in Path("/tmp").glob("car-detector-deploy.*")}


# ---------------------------------------------------------------------------- first deploy

def test_first_deploy_puts_every_file_where_the_unit_expects_it(deployed: Deployment) -> None:
    root = deployed.root
    assert (root / "etc/systemd/system/car-detector.service").read_bytes() == \
        (FIRMWARE / "car-detector.service").read_bytes()
    assert deployed.config.read_bytes() == (FIRMWARE / "config.toml").read_bytes()
    assert stat.S_IMODE(deployed.config.stat().st_mode) == 0o640, "config may hold the MQTT password"
    # model: versioned directory + `current` symlink, holding the manifest and what it names
    target = os.readlink(deployed.current_model)
    assert len(target) == 12 and all(c in "0123456789abcdef" for c in target), target
    shipped = sorted(p.name for p in deployed.current_model.iterdir())
    manifest = json.loads((deployed.model_dir / "manifest.json").read_text())
    named = {m["file"] for m in manifest["models"].values()} | {manifest["golden"]["file"]}
    assert shipped == sorted(named | {"manifest.json"})
    for name in named:
        assert (deployed.current_model / name).read_bytes() == (deployed.model_dir / name).read_bytes()
    # venv: versioned too, and the unit's ExecStart path exists
    assert os.readlink(deployed.venv_link).startswith("venvs/")
    assert os.access(root / "opt/car-detector/venv/bin/car-detector", os.X_OK)
    assert (root / "var/lib/car-detector/capture").is_dir()
    state = (root / "opt/car-detector/installed.env").read_text()
    assert f"MODEL_ID={target}" in state
    # the service was (re)loaded, enabled and restarted, then checked
    calls = deployed.pi.systemctl_calls()
    for expected in ("daemon-reload", "enable car-detector.service", "restart car-detector.service",
                     "is-active car-detector.service"):
        assert expected in calls, f"systemctl {expected} missing from {calls}"
    out = deployed.first.stdout
    assert "PI_ROOT set: not creating the system user" in out and "useradd --system" in out
    assert "preflight" in out and "car-detector is active" in out


def test_installed_venv_runs_the_daemons_preflight_on_the_model(deployed: Deployment) -> None:
    venv = deployed.root / "opt/car-detector/venv"
    result = subprocess.run([str(venv / "bin/car-detector"), "preflight", "--model", str(deployed.current_model)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, explain(result)
    runtime = subprocess.run([str(venv / "bin/python"), "-c",
                              "import importlib, sys, numpy\n"
                              "old = sys.version_info < (3, 12)\n"
                              "importlib.import_module('tflite_runtime.interpreter' if old else 'ai_edge_litert.interpreter')\n"
                              "print(old, numpy.__version__)"],
                             capture_output=True, text=True, timeout=60)
    assert runtime.returncode == 0, explain(runtime)
    old_python, numpy_version = runtime.stdout.split()
    if old_python == "True":
        assert numpy_version.startswith("1."), "tflite-runtime 2.14 needs NumPy < 2"


def test_second_deploy_of_the_same_checkout_changes_nothing(deployed: Deployment) -> None:
    before, calls = snapshot(deployed.root), len(deployed.pi.systemctl_calls())
    result = deployed.deploy(WHEEL=None)  # rebuilds the wheel: same content, same venv id
    assert result.returncode == 0, explain(result)
    assert "already installed" in result.stdout
    assert snapshot(deployed.root) == before
    assert new_calls(deployed, calls) == [], "no daemon-reload/restart when nothing changed"


# ---------------------------------------------------------------------------- dry run

def test_dry_run_prints_every_step_and_changes_nothing(deployed: Deployment, tmp_path: Path) -> None:
    model = variant_model(deployed.model_dir, tmp_path / "model", "dry-run")
    before, calls, tmp_before = snapshot(deployed.root), len(deployed.pi.systemctl_calls()), deploy_tmp_dirs()
    stage = REPO / "build" / "deploy"
    stage_before = snapshot(stage) if stage.exists() else None
    result = deployed.deploy(DRY_RUN="1", MODEL=str(model))
    assert result.returncode == 0, explain(result)
    out = result.stdout
    current = os.readlink(deployed.current_model)
    assert f"model:  {current} -> " in out
    for step in (f"would run: {sys.executable} -m pip wheel", "would run: mkdir -p", "would run: cp -R",
                 "car-detector preflight --model", "systemctl restart car-detector.service",
                 "nothing was changed"):
        assert step in out, f"dry run should mention {step!r}:\n{out}"
    assert snapshot(deployed.root) == before
    assert new_calls(deployed, calls) == []
    assert deploy_tmp_dirs() == tmp_before, "a dry run copies nothing to the Pi"
    assert (snapshot(stage) if stage.exists() else None) == stage_before, "a dry run builds nothing"


def test_dry_run_of_what_is_installed_says_so(deployed: Deployment) -> None:
    result = deployed.deploy(DRY_RUN="1")  # WHEEL= is set: the venv id is known too
    assert result.returncode == 0, explain(result)
    assert "already installed" in result.stdout


# ---------------------------------------------------------------------------- rollbacks

def test_corrupt_model_fails_preflight_and_nothing_is_switched(deployed: Deployment, tmp_path: Path) -> None:
    broken = variant_model(deployed.model_dir, tmp_path / "broken", "broken")
    tflite = broken / "model_int8.tflite"
    data = bytearray(tflite.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different sha256 than the manifest says
    tflite.write_bytes(bytes(data))
    current, calls = os.readlink(deployed.current_model), len(deployed.pi.systemctl_calls())
    models_before = sorted(p.name for p in deployed.current_model.parent.iterdir())

    result = deployed.deploy(MODEL=str(broken))

    assert result.returncode == 4, explain(result)
    assert "rolled back" in result.stderr.lower()
    assert "sha256" in result.stderr and "preflight" in result.stderr
    assert os.readlink(deployed.current_model) == current
    assert sorted(p.name for p in deployed.current_model.parent.iterdir()) == models_before, \
        "the rejected model must not be left behind"
    assert new_calls(deployed, calls) == [], "the running service must not be touched"


def test_service_not_active_after_restart_rolls_back_model(deployed: Deployment, tmp_path: Path) -> None:
    model = variant_model(deployed.model_dir, tmp_path / "model", "does-not-start")
    current, venv = os.readlink(deployed.current_model), os.readlink(deployed.venv_link)
    config = deployed.config.read_bytes()
    calls = len(deployed.pi.systemctl_calls())
    deployed.pi.queue_is_active("failed")  # the new version dies; the old one comes back up
    try:
        result = deployed.deploy(MODEL=str(model))
    finally:
        deployed.pi.reset_fakes()
    assert result.returncode == 4, explain(result)
    assert f"Rolled back to the previous model {current}" in result.stderr
    assert "is not active after the restart (state: failed)" in result.stderr
    assert os.readlink(deployed.current_model) == current
    assert os.readlink(deployed.venv_link) == venv
    assert deployed.config.read_bytes() == config
    made = new_calls(deployed, calls)
    assert made.count("restart car-detector.service") == 2, f"restart new, then restart old: {made}"
    # The state still describes the version that runs, so deploying it again is a no-op.
    again = deployed.deploy()
    assert again.returncode == 0 and "already installed" in again.stdout, explain(again)


# ---------------------------------------------------------------------------- config

def edited_default(tmp_path: Path) -> Path:
    """A release whose default config differs from firmware_config/config.toml."""
    path = tmp_path / "config.toml"
    text = (FIRMWARE / "config.toml").read_text().replace("log_every_s = 60.0", "log_every_s = 30.0")
    assert "log_every_s = 30.0" in text
    path.write_text(text)
    return path


def test_edited_config_survives_and_new_default_is_written_beside_it(deployed: Deployment,
                                                                     tmp_path: Path) -> None:
    original = deployed.config.read_bytes()
    mine = original.replace(b'level = "INFO"', b'level = "DEBUG"') + b"# my notes\n"
    deployed.config.write_bytes(mine)
    new_file = deployed.config.with_name("config.toml.new")
    try:
        same = deployed.deploy()  # same default as before: keep, nothing to write
        assert same.returncode == 0 and "already installed" in same.stdout, explain(same)
        assert deployed.config.read_bytes() == mine and not new_file.exists()

        calls = len(deployed.pi.systemctl_calls())
        changed = deployed.deploy(CONFIG=str(edited_default(tmp_path)))
        assert changed.returncode == 0, explain(changed)
        assert deployed.config.read_bytes() == mine, "an edited config is never overwritten"
        assert new_file.read_bytes() == edited_default(tmp_path).read_bytes()
        assert "config.toml.new" in changed.stdout and "keeping your edited" in changed.stdout
        assert "restart car-detector.service" not in new_calls(deployed, calls)
    finally:
        deployed.config.write_bytes(original)
        new_file.unlink(missing_ok=True)


def test_unedited_config_follows_a_new_default(deployed: Deployment, tmp_path: Path) -> None:
    assert deployed.config.read_bytes() == (FIRMWARE / "config.toml").read_bytes()
    calls = len(deployed.pi.systemctl_calls())
    changed = deployed.deploy(CONFIG=str(edited_default(tmp_path)))
    assert changed.returncode == 0, explain(changed)
    assert deployed.config.read_bytes() == edited_default(tmp_path).read_bytes()
    assert "restart car-detector.service" in new_calls(deployed, calls), "a new config needs a restart"
    back = deployed.deploy()
    assert back.returncode == 0, explain(back)
    assert deployed.config.read_bytes() == (FIRMWARE / "config.toml").read_bytes()


# ---------------------------------------------------------------------------- uninstall

def copy_of_install(deployed: Deployment, dest: Path) -> Deployment:
    """A copy of the installed root to uninstall. Uninstalling never runs the venv, so its
    bulk (site-packages) is left out of the copy to keep the test fast."""
    def bulk(directory: str, names: list[str]) -> list[str]:
        return [n for n in names if n in ("lib", "lib64")] if "/venvs/" in directory else []

    shutil.copytree(deployed.root, dest, symlinks=True, ignore=bulk)
    return Deployment(pi=deployed.pi, root=dest, model_dir=deployed.model_dir, wheelhouse=deployed.wheelhouse,
                      first=deployed.first, wheel=deployed.wheel, python=deployed.python)


def test_uninstall_keeps_data_and_removes_the_rest(deployed: Deployment, tmp_path: Path) -> None:
    dep = copy_of_install(deployed, tmp_path / "root")
    events = dep.root / "var/lib/car-detector/events.jsonl"
    events.write_text('{"zone": "frame", "present": true}\n')
    calls = len(dep.pi.systemctl_calls())

    result = dep.uninstall()

    assert result.returncode == 0, explain(result)
    assert "disable --now car-detector.service" in new_calls(dep, calls)
    assert not (dep.root / "etc/systemd/system/car-detector.service").exists()
    assert not (dep.root / "opt/car-detector").exists()
    assert not (dep.root / "etc/car-detector").exists(), "an unedited config goes with the program"
    assert events.read_text().startswith('{"zone"'), "captured data and events stay"
    assert (dep.root / "var/lib/car-detector/model").is_dir()

    purge = dep.uninstall(PURGE="1")
    assert purge.returncode == 0, explain(purge)
    assert not (dep.root / "var/lib/car-detector").exists()
    again = dep.uninstall(PURGE="1")
    assert again.returncode == 0 and "nothing to remove" in again.stdout, explain(again)


def test_uninstall_keeps_an_edited_config_unless_purge(deployed: Deployment, tmp_path: Path) -> None:
    dep = copy_of_install(deployed, tmp_path / "root")
    dep.config.write_text(dep.config.read_text() + "# tuned for my driveway\n")
    result = dep.uninstall()
    assert result.returncode == 0, explain(result)
    assert "keeping your edited" in result.stdout
    assert dep.config.read_text().endswith("# tuned for my driveway\n")
    assert not (dep.root / "opt/car-detector").exists()
    purge = dep.uninstall(PURGE="1")
    assert purge.returncode == 0, explain(purge)
    assert not dep.config.exists()


def test_uninstall_dry_run_changes_nothing(deployed: Deployment, tmp_path: Path) -> None:
    dep = copy_of_install(deployed, tmp_path / "root")
    before, calls = snapshot(dep.root), len(dep.pi.systemctl_calls())
    result = dep.uninstall(DRY_RUN="1", PURGE="1")
    assert result.returncode == 0, explain(result)
    assert "would run: rm -rf" in result.stdout
    assert snapshot(dep.root) == before
    assert new_calls(dep, calls) == []


# ---------------------------------------------------------------------------- non-root

def test_install_runs_unprivileged_under_pi_root(deployed: Deployment) -> None:
    """With PI_ROOT set, install.sh needs no root: an ordinary user (nobody here) installs
    into a prefix it owns, and the system user it would create is only reported."""
    if os.geteuid() != 0:
        pytest.skip("switching to the nobody user needs root")
    nobody = pwd.getpwnam("nobody")
    work = Path(tempfile.mkdtemp(prefix="car-detector-nonroot-", dir="/tmp"))
    try:
        os.chmod(work, 0o755)
        bundle, root, state, house = (work / n for n in ("bundle", "root", "state", "wheelhouse"))
        for d in (root, state):
            d.mkdir()
            os.chown(d, nobody.pw_uid, nobody.pw_gid)
        bundle.mkdir()
        shutil.copyfile(deployed.wheel, bundle / deployed.wheel.name)
        shutil.copytree(deployed.current_model, bundle / "model")
        shutil.copyfile(FIRMWARE / "config.toml", bundle / "config.toml")
        shutil.copyfile(FIRMWARE / "car-detector.service", bundle / "car-detector.service")
        for script in ("install.sh", "pi-lib.sh"):
            shutil.copyfile(REPO / "deploy" / script, bundle / script)
        house.mkdir()
        for wheel in deployed.wheelhouse.iterdir():  # hard links: the originals sit in a 0700 tmp dir
            os.link(wheel, house / wheel.name)
        for path in (bundle, house, *bundle.rglob("*"), *house.iterdir()):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        env = {**deployed.env(), "PI_ROOT": str(root), "HOME": str(state), "FAKE_PI_STATE": str(state),
               "CAR_DETECTOR_PIP_ARGS": f"--no-index --find-links {house} --no-compile",
               "PATH": f"{REPO / 'tests/fakes/bin'}:/usr/sbin:/usr/bin:/sbin:/bin"}
        result = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                 "bash", str(bundle / "install.sh"), str(bundle)],
                                capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, explain(result)
        assert "PI_ROOT set: not creating the system user" in result.stdout
        assert "skipping chown car-detector:car-detector" in result.stdout
        current = root / "var/lib/car-detector/model/current"
        assert os.readlink(current) == os.readlink(deployed.current_model), "same model, same id"
        assert (root / "var/lib/car-detector/model").stat().st_uid == nobody.pw_uid
        assert os.access(root / "opt/car-detector/venv/bin/car-detector", os.X_OK)
        assert "restart car-detector.service" in (state / "systemctl.log").read_text()
    finally:
        shutil.rmtree(work, ignore_errors=True)
