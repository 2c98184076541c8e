"""firmware_config/config.toml: the default daemon config the deploy installs.

It must load with the daemon's own loader, equal the code's defaults (so its comments
describe what actually happens), and mention every key of every section with a comment,
so that a key added to edge/config.py cannot ship undocumented.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import get_args, get_origin, get_type_hints

from edge.config import Config, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "firmware_config" / "config.toml"

HEADER = re.compile(r"^\s*#?\s*\[([A-Za-z0-9_.]+)\]\s*$")
KEY = re.compile(r"^\s*#?\s*([A-Za-z_][A-Za-z0-9_]*)\s*=")


def keys_by_section(text: str) -> dict[str, list[tuple[str, int]]]:
    """Section name -> (key, line index), counting commented-out examples ("# x = 0") too."""
    out: dict[str, list[tuple[str, int]]] = {"": []}
    section = ""
    for i, line in enumerate(text.splitlines()):
        if m := HEADER.match(line):
            section = m.group(1)
            out.setdefault(section, [])
        elif m := KEY.match(line):
            out[section].append((m.group(1), i))
    return out


def is_description(line: str) -> bool:
    """A comment that explains (not a commented-out key or header)."""
    stripped = line.strip()
    if not stripped.startswith("#"):
        return False
    body = stripped.lstrip("#").strip()
    return bool(body) and not KEY.match(body) and not HEADER.match(body)


def test_loads_with_the_daemons_loader_and_equals_the_code_defaults() -> None:
    cfg = load_config(CONFIG)
    assert cfg == Config(), "firmware_config/config.toml must show the built-in defaults"
    assert cfg.model.path == "/var/lib/car-detector/model/current"
    for path in (cfg.events.path, cfg.capture.dir, cfg.mqtt.queue_path):
        assert path.startswith("/var/lib/car-detector/"), path


def test_every_field_of_every_section_is_in_the_file() -> None:
    found = keys_by_section(CONFIG.read_text())
    hints = get_type_hints(Config)
    for section in dataclasses.fields(Config):
        tp = hints[section.name]
        if not dataclasses.is_dataclass(tp) and get_origin(tp) is not dict:  # a top-level key (zones_file)
            assert section.name in {k for k, _ in found[""]}, f"{section.name} missing from the top of {CONFIG.name}"
            continue
        if get_origin(tp) is dict:  # [zones.<name>] tables: at least one (commented) example
            item_cls = get_args(tp)[1]
            examples = [s for s in found if s.startswith(f"{section.name}.")]
            assert examples, f"no [{section.name}.<name>] example table in {CONFIG.name}"
            # the examples together document every key (a rectangle and a polygon differ)
            found[f"{section.name}.*"] = [kv for s in examples for kv in found[s]]
            sections = {f"{section.name}.*": item_cls}
        else:
            assert section.name in found, f"section [{section.name}] missing from {CONFIG.name}"
            sections = {section.name: tp}
        nested = {f"{name}.{f.name}": get_type_hints(cls)[f.name] for name, cls in list(sections.items())
                  for f in dataclasses.fields(cls) if dataclasses.is_dataclass(get_type_hints(cls)[f.name])}
        for name in nested:  # a nested table ([mqtt.tls]) is documented as its own section
            assert name in found, f"section [{name}] missing from {CONFIG.name}"
        sections.update(nested)
        for name, cls in sections.items():
            present = {k for k, _ in found[name]} | {n.rsplit(".", 1)[1] for n in nested if n.rsplit(".", 1)[0] == name}
            missing = [f.name for f in dataclasses.fields(cls) if f.name not in present]
            assert not missing, f"[{name}] in {CONFIG.name} lacks {missing} (document new keys there)"
            unknown = present - {f.name for f in dataclasses.fields(cls)}
            assert not unknown, f"[{name}] in {CONFIG.name} has keys the daemon does not know: {unknown}"


def test_every_key_has_a_comment_above_it() -> None:
    lines = CONFIG.read_text().splitlines()
    for section, keys in keys_by_section("\n".join(lines)).items():
        for key, index in keys:
            j = index - 1
            # keys in one block (width/height) may share the comment above the block
            while j >= 0 and lines[j].strip() and not is_description(lines[j]) and KEY.match(lines[j]):
                j -= 1
            assert j >= 0 and is_description(lines[j]), \
                f"{section}.{key} (line {index + 1}) has no explaining comment above it"


def test_the_commented_zone_example_is_valid_when_uncommented() -> None:
    """Uncommenting the example is what a Pi owner does first; it must load as it stands."""
    lines = CONFIG.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if HEADER.match(ln) and "zones." in ln)
    end = next(i for i in range(start, len(lines)) if lines[i].strip() and not lines[i].lstrip().startswith("#"))
    block = [ln[2:] if ln.startswith("# ") else ln for ln in lines[start:end]]
    text = "\n".join(lines[:start] + block + lines[end:])
    cfg = parse_config(tomllib.loads(text))
    assert len(cfg.zones) == 2  # a rectangle and a polygon
    for zone in cfg.zones.values():
        assert zone.width > 0 and zone.height > 0
