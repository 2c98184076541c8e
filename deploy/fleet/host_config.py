"""The default config one fleet host is shipped: the bundle's config with that host's
inventory variables written in, so the inventory is the one place a fleet names its cameras.

    python deploy/fleet/host_config.py BASE OUT [--camera-id ID] [--metrics-port PORT]

camera_id becomes [camera] id (MQTT topics, Home Assistant device, the `camera` label of every
metric) and metrics_port becomes [http] port: the Prometheus file-SD generated from the same
inventory (deploy/fleet/prometheus.py) then scrapes the port the daemon listens on, and the
labels it expects are the ones the daemon sets. Only those lines change; comments and every
other setting stay as in BASE. Run by deploy/fleet/playbook.yml on the workstation, per host.

The result must load with edge.config, so an inventory value the daemon would refuse stops
this host here, before anything is copied to it.

Exit status: 0 written, 2 a value edge.config refuses (the message names the inventory
variable and the config key).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root: edge.config

from edge.config import ConfigError, load_config  # noqa: E402 - after the path set-up

HEADER = re.compile(r"^\s*\[([^\]]+)\]\s*(#.*)?$")


def set_key(lines: list[str], section: str, key: str, value: str) -> list[str]:
    """Lines with `key = value` set in [section]: the existing line replaced, else inserted
    right after the header, else the section appended. Commented-out lines are left alone."""
    assign = re.compile(rf"^\s*{re.escape(key)}\s*=")
    start = next((i for i, line in enumerate(lines) if (m := HEADER.match(line)) and m.group(1).strip() == section),
                 None)
    if start is None:
        return [*lines, "", f"[{section}]", f"{key} = {value}"]
    end = next((i for i in range(start + 1, len(lines)) if HEADER.match(lines[i])), len(lines))
    for i in range(start + 1, end):
        if assign.match(lines[i]):
            return [*lines[:i], f"{key} = {value}", *lines[i + 1:]]
    return [*lines[:start + 1], f"{key} = {value}", *lines[start + 1:]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", type=Path, help="the default config of the bundle")
    ap.add_argument("out", type=Path, help="where this host's config is written")
    ap.add_argument("--camera-id", help="inventory camera_id -> [camera] id (default: keep BASE's)")
    ap.add_argument("--metrics-port", help="inventory metrics_port -> [http] port (default: keep BASE's)")
    args = ap.parse_args(argv)
    lines = args.base.read_text(encoding="utf-8").splitlines()
    named = []
    if args.camera_id is not None:
        lines = set_key(lines, "camera", "id", json.dumps(args.camera_id))
        named.append(f"camera_id -> camera.id = {args.camera_id!r}")
    if args.metrics_port is not None:
        if not args.metrics_port.isdigit():
            print(f"ERROR: inventory metrics_port = {args.metrics_port!r} is not a port number (http.port)\n"
                  "  what to do: set metrics_port to the TCP port the daemon serves /metrics on, e.g. 8080",
                  file=sys.stderr)
            return 2
        lines = set_key(lines, "http", "port", args.metrics_port)
        named.append(f"metrics_port -> http.port = {args.metrics_port}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        load_config(args.out)
    except ConfigError as exc:
        args.out.unlink()
        print(f"ERROR: the config for this host does not load ({'; '.join(named) or 'no inventory values'}): {exc}\n"
              "  what to do: fix camera_id / metrics_port for this host in the inventory", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
