"""The zones file the page writes: `[zones.<name>]` tables in their own TOML file.

Why a separate file (the main config's `zones_file` key names it): rewriting the user's
config.toml from a program would lose its comments and layout; a file that only the page
writes can be regenerated whole. It is replaced atomically (tmp + fsync + rename), so the
daemon, a SIGHUP or a power cut never sees half a file, and it is checked with the same
loader the daemon uses before anything is written: a bad zone is refused, named, and the
running zones stay.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from edge.config import Config, ConfigError, Zone, parse_config
from edge.files import open_replace

# Zone names end up in MQTT topics, Home Assistant unique ids and Prometheus labels.
ZONE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
HEADER = ("# Zones, written by the car-detector page (the main config includes this file through\n"
          "# its zones_file key). Coordinates are processing pixels. Edits by hand are fine;\n"
          "# the page rewrites the whole file on its next save.\n")


def zones_from_json(items: Any, cfg: Config) -> dict[str, Zone]:
    """Zones sent by the page, checked exactly as the daemon would check them at load.

    `items` is a list of {name, x, y, width, height} or {name, points, ...}, optionally with
    `classify`. Raises ConfigError naming the zone and key.
    """
    if not isinstance(items, list):
        raise ConfigError("zones must be a JSON list of {name, x, y, width, height} or {name, points}")
    table: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(f"zones[{i}] must be an object, got {item!r}")
        name = item.get("name")
        if not isinstance(name, str) or not ZONE_NAME.fullmatch(name):
            raise ConfigError(f"zones[{i}].name = {name!r}: use 1-40 letters, digits, '-' or '_' "
                              "starting with a letter or digit")
        if name in table:
            raise ConfigError(f"zones[{i}].name = {name!r} is used twice")
        body = {k: v for k, v in item.items() if k != "name"}
        if body.get("points"):
            body = {k: v for k, v in body.items() if k not in ("x", "y", "width", "height")}
        else:
            body.pop("points", None)
        table[name] = body
    data = {"processing": dataclasses.asdict(cfg.processing), "zones": table}
    return parse_config(data).zones


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(int(value))


def zones_to_toml(zones: dict[str, Zone]) -> str:
    """The file's text: a polygon is written as its points, a rectangle as its four keys."""
    parts = [HEADER]
    for name, z in zones.items():
        keys = {"points": z.points} if z.points else {"x": z.x, "y": z.y, "width": z.width, "height": z.height}
        if z.classify:
            keys["classify"] = True
        parts.append(f"\n[zones.{name}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in keys.items()))
    return "".join(parts)


def write_zones_file(path: Path, zones: dict[str, Zone]) -> None:
    """Replace `path` atomically: readers see the old file or the new one, never a mix."""
    tmp = path.with_name(path.name + ".tmp")
    with open_replace(tmp) as f:
        f.write(zones_to_toml(zones).encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # the rename itself survives a power cut only once the folder is synced
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def zones_to_json(zones: dict[str, Zone]) -> list[dict[str, Any]]:
    """What the page draws: every zone with its bounding box, and its points if a polygon."""
    return [{"name": n, "x": z.x, "y": z.y, "width": z.width, "height": z.height,
             "points": z.points, "classify": z.classify} for n, z in zones.items()]
