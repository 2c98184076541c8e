"""`make deploy-fleet`: deploy/fleet/deploy-fleet.sh building the bundle once, then Ansible's
own ssh connection carrying it to several "Pis" at once and running install.sh on each.

Every Pi is a real sshd on its own 127.0.0.1 port (conftest.running_sshd) with its own
throwaway key, its own fake systemctl state and its own PI_ROOT; Ansible logs in with that
key and runs modules with the target's python (ansible_python_interpreter). install.sh,
pip (offline, from the wheelhouse), the daemon's preflight on the real trained model, the
symlink switches and the rollbacks are all real, as in test_deploy.py.

The tests go on from one fleet install (the `fleet` fixture) and run in file order; the last
one leaves hosts on different models.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import (REPO, PiTarget, explain, free_port, running_sshd, snapshot, with_overrides,
                                   target_python)
from tests.deploy.test_deploy import variant_model
from tests.deploy.test_site_gate import finetune, int8_sha, site_section

pytestmark = pytest.mark.ssh

FLEET = REPO / "deploy" / "fleet" / "deploy-fleet.sh"
OUT = REPO / "build" / "fleet"
NAMES = ("cam-a", "cam-b", "cam-c")


@dataclass
class Host:
    """One "Pi" of the fleet: its sshd and the root install.sh installs under."""

    name: str
    pi: PiTarget
    root: Path

    @property
    def current_model(self) -> Path:
        return self.root / "var/lib/car-detector/model/current"

    def inventory_vars(self, metrics_port: int) -> dict[str, object]:
        return {
            "ansible_host": "127.0.0.1",
            "ansible_port": self.pi.port,
            "ansible_user": getpass.getuser(),
            "ansible_ssh_private_key_file": str(self.pi.key),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
            "ansible_python_interpreter": target_python(),
            "camera_id": self.name.replace("-", "_"),
            "metrics_port": metrics_port,
            "car_detector_pi_root": str(self.root),
        }


@dataclass
class Fleet:
    hosts: list[Host]
    model_dir: Path
    wheelhouse: Path
    first: subprocess.CompletedProcess[str]
    wheel: Path
    first_results: dict[str, dict] = field(default_factory=dict)

    def inventory(self, path: Path, extra: dict[str, dict[str, object]] | None = None) -> Path:
        """A YAML inventory of the hosts (plus `extra` hosts/vars by name)."""
        hosts = {h.name: h.inventory_vars(9100 + i) for i, h in enumerate(self.hosts)}
        for name, more in (extra or {}).items():
            hosts.setdefault(name, {}).update(more)
        path.write_text(yaml.safe_dump({"all": {"hosts": hosts}}, sort_keys=False))
        return path

    def env(self, inventory: Path | None, **overrides: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CAR_DETECTOR_", "PI_", "DRY_RUN", "INVENTORY", "LIMIT", "ANSIBLE_"))}
        env.update(
            MODEL=str(self.model_dir),
            PYTHON=sys.executable,
            CAR_DETECTOR_ALLOW_ANY_ARCH="1",
            CAR_DETECTOR_SKIP_CAMERA_CHECK="1",
            CAR_DETECTOR_PYTHON=target_python(),
            CAR_DETECTOR_PIP_ARGS=f"--no-index --find-links {self.wheelhouse} --no-compile",
            CAR_DETECTOR_SETTLE_S="0",
            # A connection master that outlives the test would hold the stopped sshd's session.
            ANSIBLE_SSH_ARGS="-C -o ControlMaster=auto -o ControlPersist=2s",
        )
        if inventory is not None:
            env["INVENTORY"] = str(inventory)
        if self.wheel != Path():
            env["WHEEL"] = str(self.wheel)
        return with_overrides(env, overrides)

    def deploy(self, inventory: Path | None, **overrides: str | None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(FLEET)], cwd=REPO, env=self.env(inventory, **overrides),
                              capture_output=True, text=True, timeout=400)


def results() -> dict[str, dict]:
    return {r["host"]: r for r in json.loads((OUT / "results.json").read_text())}


def summary_line(out: str, host: str) -> str:
    """The host's line in the summary deploy-fleet.sh prints after ansible-playbook's output."""
    summary = out.rsplit("==> Fleet: ", 1)[-1]
    lines = [line for line in summary.splitlines() if line.startswith(host + " ")]
    assert len(lines) == 1, f"one summary line for {host} expected in:\n{out}"
    return lines[0]


@pytest.fixture(scope="module")
def fleet(wheelhouse: Path, trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Three sshd "Pis" and one real fleet deploy onto all of them, building the wheel of
    this checkout as `make deploy-fleet` does (later deploys reuse it through WHEEL=)."""
    with contextlib.ExitStack() as stack:
        hosts = []
        for name in NAMES:
            work = tmp_path_factory.mktemp(f"fleet-{name}")
            pi = stack.enter_context(running_sshd(work))
            root = work / "root"
            root.mkdir()
            hosts.append(Host(name=name, pi=pi, root=root))
        fl = Fleet(hosts=hosts, model_dir=Path(trained_model_dir), wheelhouse=wheelhouse,
                   first=subprocess.CompletedProcess([], 0), wheel=Path())
        inventory = fl.inventory(tmp_path_factory.mktemp("inventory") / "inventory.yml")
        fl.first = fl.deploy(inventory)
        assert fl.first.returncode == 0, "first fleet deploy failed:\n" + explain(fl.first)
        fl.first_results = results()
        built = sorted((REPO / "build" / "deploy").glob("*.whl"))
        assert len(built) == 1, built
        fl.wheel = tmp_path_factory.mktemp("fleet-wheel") / built[0].name
        shutil.copyfile(built[0], fl.wheel)
        yield fl


def install_interval(result: dict) -> tuple[datetime, datetime]:
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    return datetime.strptime(result["started"], fmt), datetime.strptime(result["ended"], fmt)


# ---------------------------------------------------------------------------- first deploy

def test_first_fleet_deploy_installs_every_host_at_once(fleet: Fleet) -> None:
    res = fleet.first_results
    assert {h: r["status"] for h, r in res.items()} == dict.fromkeys(NAMES, "ok"), res
    model_ids = {os.readlink(h.current_model) for h in fleet.hosts}
    assert len(model_ids) == 1, f"every host runs the same model: {model_ids}"
    for host in fleet.hosts:
        assert os.access(host.root / "opt/car-detector/venv/bin/car-detector", os.X_OK), host.name
        calls = host.pi.systemctl_calls()
        assert "restart car-detector.service" in calls, (host.name, calls)
        assert summary_line(fleet.first.stdout, host.name).split()[1] == "ok"
        assert "car-detector is active" in res[host.name]["reason"], res[host.name]
        assert "preflight" in Path(res[host.name]["log"]).read_text()
        # the inventory names the camera: camera_id and metrics_port are in its config
        config = tomllib.loads((host.root / "etc/car-detector/config.toml").read_text())
        inv = host.inventory_vars(0)
        assert config["camera"]["id"] == inv["camera_id"], config["camera"]
        assert config["http"]["port"] == 9100 + fleet.hosts.index(host), config["http"]
    # In parallel: every host's install.sh started before any of them ended.
    intervals = [install_interval(r) for r in res.values()]
    assert max(s for s, _ in intervals) < min(e for _, e in intervals), intervals


def test_second_fleet_deploy_changes_nothing(fleet: Fleet, tmp_path: Path) -> None:
    before = [(snapshot(h.root), len(h.pi.systemctl_calls())) for h in fleet.hosts]
    result = fleet.deploy(fleet.inventory(tmp_path / "inventory.yml"))
    assert result.returncode == 0, explain(result)
    assert {h: r["status"] for h, r in results().items()} == dict.fromkeys(NAMES, "unchanged")
    assert [(snapshot(h.root), len(h.pi.systemctl_calls())) for h in fleet.hosts] == before


def test_fleet_dry_run_plans_every_host_and_changes_nothing(fleet: Fleet, tmp_path: Path) -> None:
    model = variant_model(fleet.model_dir, tmp_path / "model", "fleet-dry-run")
    before = [(snapshot(h.root), len(h.pi.systemctl_calls())) for h in fleet.hosts]
    stage = REPO / "build" / "deploy"
    stage_before = snapshot(stage)
    result = fleet.deploy(fleet.inventory(tmp_path / "inventory.yml"), DRY_RUN="1", MODEL=str(model))
    assert result.returncode == 0, explain(result)
    res = results()
    assert {h: r["status"] for h, r in res.items()} == dict.fromkeys(NAMES, "planned"), res
    for host in fleet.hosts:
        log = Path(res[host.name]["log"]).read_text()
        assert f"model:  {os.readlink(host.current_model)} -> " in log, log
        assert "dry run: nothing was changed" in log
    assert [(snapshot(h.root), len(h.pi.systemctl_calls())) for h in fleet.hosts] == before
    assert snapshot(stage) == stage_before, "a dry run builds nothing"
    assert not (OUT / "bundle.tar.gz").exists(), "a dry run copies nothing"


def test_fleet_without_an_inventory_says_what_to_do(fleet: Fleet, tmp_path: Path) -> None:
    missing = fleet.deploy(None)
    assert missing.returncode == 2, explain(missing)
    assert "INVENTORY is not set" in missing.stderr and "inventory.example.yml" in missing.stderr
    absent = fleet.deploy(tmp_path / "nope.yml")
    assert absent.returncode == 2 and "is not a readable file" in absent.stderr, explain(absent)


# ---------------------------------------------------------------------------- failures

def test_a_camera_id_the_daemon_refuses_stops_that_host_before_anything_is_copied(fleet: Fleet,
                                                                                  tmp_path: Path) -> None:
    a = fleet.hosts[0]
    before, calls = snapshot(a.root), len(a.pi.systemctl_calls())
    inventory = fleet.inventory(tmp_path / "inventory.yml", extra={"cam-a": {"camera_id": "front door"}})
    result = fleet.deploy(inventory, LIMIT="cam-a")
    assert result.returncode == 1, explain(result)
    res = results()
    assert list(res) == ["cam-a"] and res["cam-a"]["status"] == "failed", res
    assert "camera.id = 'front door' is not a usable camera id" in res["cam-a"]["reason"], res["cam-a"]
    assert "fix camera_id" in res["cam-a"]["reason"]
    assert snapshot(a.root) == before and len(a.pi.systemctl_calls()) == calls


def broken_runtime(dest: Path) -> Path:
    """A PYTHONPATH entry on which both inference runtimes fail to load, as they do on a Pi
    whose runtime library is broken (the preflight's first inference cannot run)."""
    for package in ("tflite_runtime", "ai_edge_litert"):
        (dest / package).mkdir(parents=True)
        (dest / package / "__init__.py").write_text("")
        (dest / package / "interpreter.py").write_text(
            "raise ImportError('libtensorflowlite_c.so: cannot open shared object file (broken on this host)')\n")
    return dest


def test_one_host_fails_its_preflight_and_is_rolled_back_while_the_others_go_on(fleet: Fleet,
                                                                                tmp_path: Path) -> None:
    """cam-a takes the new model; cam-b's runtime is broken, so its preflight fails and
    nothing is switched; cam-c's new version does not stay up and is switched back; cam-gone
    does not answer. Each host gets its own line; none stops the others."""
    model = variant_model(fleet.model_dir, tmp_path / "model", "fleet-rollout")
    a, b, c = fleet.hosts
    old = {h.name: os.readlink(h.current_model) for h in fleet.hosts}
    calls = {h.name: len(h.pi.systemctl_calls()) for h in fleet.hosts}
    b_models = sorted(p.name for p in b.current_model.parent.iterdir())
    c.pi.queue_is_active("failed")
    tmp_dirs = set(Path("/tmp").glob("car-detector-deploy.*"))
    inventory = fleet.inventory(tmp_path / "inventory.yml", extra={
        "cam-b": {"car_detector_env": {"PYTHONPATH": str(broken_runtime(tmp_path / "broken"))}},
        "cam-gone": {"ansible_host": "127.0.0.1", "ansible_port": free_port(), "camera_id": "gone",
                     "metrics_port": 9199, "ansible_python_interpreter": target_python()},
    })
    try:
        result = fleet.deploy(inventory, MODEL=str(model))
    finally:
        c.pi.reset_fakes()

    assert result.returncode == 1, explain(result)  # 1: a host failed (unreachable), not only rolled back
    res = results()
    assert {h: r["status"] for h, r in res.items()} == {
        "cam-a": "ok", "cam-b": "rolled back", "cam-c": "rolled back", "cam-gone": "failed"}, res
    # cam-a: switched to the new model and restarted once
    assert os.readlink(a.current_model) != old["cam-a"]
    assert a.pi.systemctl_calls()[calls["cam-a"]:].count("restart car-detector.service") == 1
    # cam-b: preflight failed, nothing switched, the service never touched, nothing left behind
    assert "preflight failed" in res["cam-b"]["reason"], res["cam-b"]
    assert "cannot open shared object file" in Path(res["cam-b"]["log"]).read_text()
    assert "Rolled back: nothing was switched" in Path(res["cam-b"]["log"]).read_text()
    assert os.readlink(b.current_model) == old["cam-b"]
    assert sorted(p.name for p in b.current_model.parent.iterdir()) == b_models
    assert b.pi.systemctl_calls()[calls["cam-b"]:] == []
    # cam-c: switched, did not stay active, switched back and restarted on the old model
    assert "is not active after the restart (state: failed)" in res["cam-c"]["reason"], res["cam-c"]
    assert f"Rolled back to the previous model {old['cam-c']}" in Path(res["cam-c"]["log"]).read_text()
    assert os.readlink(c.current_model) == old["cam-c"]
    assert c.pi.systemctl_calls()[calls["cam-c"]:].count("restart car-detector.service") == 2
    assert set(Path("/tmp").glob("car-detector-deploy.*")) == tmp_dirs, "each host's bundle copy is removed"
    # cam-gone: unreachable, said so
    assert res["cam-gone"]["reason"].startswith("unreachable:"), res["cam-gone"]
    for name, status in (("cam-a", "ok"), ("cam-b", "rolled back"), ("cam-c", "rolled back"),
                         ("cam-gone", "failed")):
        assert summary_line(result.stdout, name).split(None, 1)[1].startswith(status)


# ---------------------------------------------------------------------------- site fine-tune

def test_a_worse_site_finetune_is_refused_per_host_unless_forced(fleet: Fleet, tmp_path: Path) -> None:
    """The rule of `make deploy` on every host (deploy/site_gate.py): cam-a and cam-b run the
    fine-tune's base, where it is worse: refused, left as they are; cam-c (here a fresh root)
    runs nothing yet, so there is nothing to compare and it is planned. FORCE=1 plans all."""
    a, b, _ = fleet.hosts
    assert int8_sha(a.current_model) == int8_sha(b.current_model) == int8_sha(fleet.model_dir)
    model = finetune(fleet.model_dir, tmp_path / "ft", site_section(int8_sha(fleet.model_dir), 0.41, 0.38))
    fresh = tmp_path / "cam-c-root"
    fresh.mkdir()
    inventory = fleet.inventory(tmp_path / "inventory.yml", extra={"cam-c": {"car_detector_pi_root": str(fresh)}})
    before = [(snapshot(h.root), len(h.pi.systemctl_calls())) for h in (a, b)]

    refused = fleet.deploy(inventory, DRY_RUN="1", MODEL=str(model))
    assert refused.returncode == 8, explain(refused)
    res = results()
    assert {h: r["status"] for h, r in res.items()} == {"cam-a": "refused", "cam-b": "refused", "cam-c": "planned"}, res
    for name in ("cam-a", "cam-b"):
        reason = res[name]["reason"]
        assert "worse" in reason and "AP50 0.410" in reason and "AP50 0.380" in reason, reason
        assert "FORCE=1 make deploy-fleet" in reason, reason
        assert summary_line(refused.stdout, name).split()[1] == "refused"
    assert "nothing installed on cam-c" in Path(res["cam-c"]["log"]).read_text()
    assert [(snapshot(h.root), len(h.pi.systemctl_calls())) for h in (a, b)] == before

    forced = fleet.deploy(inventory, DRY_RUN="1", MODEL=str(model), FORCE="1")
    assert forced.returncode == 0, explain(forced)
    assert {h: r["status"] for h, r in results().items()} == dict.fromkeys(NAMES, "planned")
    assert "FORCE=1: deploying it anyway" in Path(results()["cam-a"]["log"]).read_text()
    assert [(snapshot(h.root), len(h.pi.systemctl_calls())) for h in (a, b)] == before
