"""Prometheus scrape config for a fleet, from the Ansible inventory that deploys it.

    python deploy/fleet/prometheus.py deploy/fleet/inventory.yml --out /etc/prometheus/car-detector

writes two files into --out:

  prometheus.yml          a complete config with one scrape job, `car-detector`, whose
                          targets come from file-based service discovery (paste its job
                          into an existing prometheus.yml, or run Prometheus on it);
  car-detector-targets.json
                          one target per inventory host: <ansible_host>:<metrics_port>,
                          labelled camera=<camera_id> and host=<inventory name>.

Why file-SD rather than a static list: Prometheus re-reads the targets file on change, so
regenerating it after adding a Pi to the inventory needs no Prometheus restart.

The inventory is the one `make deploy-fleet` uses; per host (or group, or all.vars):
camera_id (default: the inventory host name, as the playbook does), metrics_port (default
8080, the daemon's http.port) and ansible_host (default: the inventory host name).

The daemon labels every sample with its own camera.id; `honor_labels: true` keeps that one
when the inventory disagrees, so a Pi is named the same on the broker and in Prometheus.
A daemon listening beyond loopback wants http.token for /metrics: pass --token-file (a
file readable by Prometheus holding that token).

Exit status: 0 written, 2 a bad inventory (the message names the host and the key).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root: edge.config

import yaml  # noqa: E402 - PyYAML comes with ansible-core (the `fleet` extra)

from edge.config import CAMERA_ID  # noqa: E402 - one rule for camera ids: the daemon's

JOB = "car-detector"
TARGETS_FILE = "car-detector-targets.json"
CONFIG_FILE = "prometheus.yml"
DEFAULT_METRICS_PORT = 8080  # the daemon's default http.port (firmware_config/config.toml)


class InventoryError(ValueError):
    """An inventory the generator refuses; the message names the host and the key."""


@dataclass(frozen=True)
class Target:
    host: str  # inventory name
    address: str  # ansible_host
    port: int
    camera_id: str


def _hosts(group: dict[str, Any], inherited: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """Host name -> merged vars (all.vars < group vars < host vars), walking `children`."""
    if not isinstance(group, dict):
        raise InventoryError(f"{where} must be a mapping with hosts/vars/children, got {group!r}")
    own_vars = group.get("vars") or {}
    if not isinstance(own_vars, dict):
        raise InventoryError(f"{where}.vars must be a mapping, got {own_vars!r}")
    merged = {**inherited, **own_vars}
    out: dict[str, dict[str, Any]] = {}
    for name, hvars in (group.get("hosts") or {}).items():
        out[str(name)] = {**out.get(str(name), merged), **(hvars or {})}
    for child, sub in (group.get("children") or {}).items():
        for name, hvars in _hosts(sub or {}, merged, f"{where}.children.{child}").items():
            out[name] = {**out.get(name, {}), **hvars}
    return out


def read_inventory(path: Path) -> list[Target]:
    """Every host of an Ansible YAML inventory, checked: a usable camera id, a port, and no
    two hosts claiming one camera id (their MQTT topics and metrics would mix)."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InventoryError(f"cannot read inventory {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise InventoryError(f"inventory {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise InventoryError(f"inventory {path} must be a YAML mapping of groups (e.g. all: hosts: ...)")
    hosts: dict[str, dict[str, Any]] = {}
    everyone = data.get("all")
    top_vars = (everyone.get("vars") or {}) if isinstance(everyone, dict) else {}  # apply to every group
    for gname, group in data.items():
        for name, hvars in _hosts(group or {}, top_vars if gname != "all" else {}, gname).items():
            hosts[name] = {**hosts.get(name, {}), **hvars}
    if not hosts:
        raise InventoryError(f"inventory {path} lists no hosts")
    targets = [_target(name, hvars, path) for name, hvars in sorted(hosts.items())]
    seen: dict[str, str] = {}
    for t in targets:
        if t.camera_id in seen:
            raise InventoryError(f"{path}: hosts {seen[t.camera_id]!r} and {t.host!r} both have camera_id "
                                 f"{t.camera_id!r}; give each camera its own")
        seen[t.camera_id] = t.host
    return targets


def _target(name: str, hvars: dict[str, Any], path: Path) -> Target:
    camera_id = str(hvars.get("camera_id", name))
    if not CAMERA_ID.fullmatch(camera_id):
        raise InventoryError(f"{path}: host {name!r}: camera_id = {camera_id!r} is not a usable camera id; "
                             "use 1-63 letters, digits, '-' or '_' starting with a letter or digit")
    port = hvars.get("metrics_port", DEFAULT_METRICS_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InventoryError(f"{path}: host {name!r}: metrics_port = {port!r} must be a port number 1-65535 "
                             "(the daemon's http.port)")
    return Target(host=name, address=str(hvars.get("ansible_host", name)), port=port, camera_id=camera_id)


def targets_json(targets: list[Target]) -> list[dict[str, Any]]:
    """Prometheus file-SD: one group per host, so each keeps its own labels."""
    return [{"targets": [f"{t.address}:{t.port}"], "labels": {"camera": t.camera_id, "host": t.host}}
            for t in targets]


def scrape_config(targets_path: Path, scrape_interval: str, token_file: Path | None) -> dict[str, Any]:
    job: dict[str, Any] = {
        "job_name": JOB,
        "honor_labels": True,  # the daemon's own camera label wins over the inventory's
        "metrics_path": "/metrics",
        "scrape_interval": scrape_interval,
        "file_sd_configs": [{"files": [str(targets_path)], "refresh_interval": "1m"}],
    }
    if token_file is not None:
        job["authorization"] = {"type": "Bearer", "credentials_file": str(token_file)}
    return {"global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": [job]}


def _write_atomic(path: Path, text: str) -> None:
    """Prometheus may read the targets file at any moment: never let it see half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def generate(inventory: Path, out: Path, scrape_interval: str = "15s", token_file: Path | None = None) -> list[Target]:
    targets = read_inventory(inventory)
    out.mkdir(parents=True, exist_ok=True)
    targets_path = (out / TARGETS_FILE).resolve()
    _write_atomic(targets_path, json.dumps(targets_json(targets), indent=2) + "\n")
    _write_atomic(out / CONFIG_FILE, "# Generated by deploy/fleet/prometheus.py from " + str(inventory) + "\n"
                  + yaml.safe_dump(scrape_config(targets_path, scrape_interval, token_file), sort_keys=False))
    return targets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="deploy/fleet/prometheus.py", allow_abbrev=False,
                                 description="Prometheus scrape config (file-SD) for the Pis of an Ansible inventory.")
    ap.add_argument("inventory", type=Path, help="Ansible YAML inventory (see deploy/fleet/inventory.example.yml)")
    ap.add_argument("--out", type=Path, required=True, help=f"folder for {CONFIG_FILE} and {TARGETS_FILE}")
    ap.add_argument("--scrape-interval", default="15s", help="how often each Pi is scraped (default: 15s)")
    ap.add_argument("--token-file", type=Path, default=None,
                    help="file with the daemons' http.token, sent as a bearer token (default: none)")
    args = ap.parse_args(argv)
    try:
        targets = generate(args.inventory, args.out, args.scrape_interval, args.token_file)
    except InventoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write to {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"{len(targets)} camera(s): {', '.join(t.camera_id for t in targets)}; wrote "
          f"{args.out / CONFIG_FILE} and {args.out / TARGETS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
