"""zones.toml: what the page sends is checked like the daemon's config, written atomically,
and loads back into the same zones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.config import Config, ConfigError, Zone, load_config
from edge.zones_file import write_zones_file, zones_from_json, zones_to_json, zones_to_toml


def test_round_trip_rectangles_and_polygons_through_the_daemon_loader(tmp_path: Path) -> None:
    sent = [{"name": "gate", "x": 5, "y": 6, "width": 70, "height": 80, "classify": True},
            {"name": "drive", "points": [[10, 230], [120, 90], [200, 90], [150, 230]], "x": 1, "y": 1}]
    zones = zones_from_json(sent, Config())
    assert zones["gate"] == Zone(5, 6, 70, 80, classify=True)
    assert zones["drive"].points == sent[1]["points"] and (zones["drive"].x, zones["drive"].width) == (10, 190)
    (tmp_path / "config.toml").write_text('zones_file = "zones.toml"\n')
    write_zones_file(tmp_path / "zones.toml", zones)
    assert load_config(tmp_path / "config.toml").zones == zones
    assert oct(os.stat(tmp_path / "zones.toml").st_mode & 0o777) == "0o640"
    assert not (tmp_path / "zones.toml.tmp").exists()
    assert "x =" not in zones_to_toml({"drive": zones["drive"]})  # a polygon is its points only
    assert [z["name"] for z in zones_to_json(zones)] == ["gate", "drive"]


@pytest.mark.parametrize("sent,words", [
    ({"name": "x"}, ["JSON list"]),
    (["gate"], ["zones[0] must be an object"]),
    ([{"name": "../x", "x": 0, "y": 0, "width": 5, "height": 5}], ["zones[0].name"]),
    ([{"name": "a", "x": 0, "y": 0, "width": 5, "height": 5}] * 2, ["used twice"]),
    ([{"name": "a", "x": 300, "y": 0, "width": 50, "height": 5}], ["zones.a", "processing frame"]),
    ([{"name": "a", "x": 0, "y": 0, "width": 5}], ["zones.a.height"]),
    ([{"name": "a", "points": [[0, 0], [5, 5]]}], ["zones.a.points"]),
    ([{"name": "a", "x": 0, "y": 0, "width": 5, "height": 5, "colour": "red"}], ["unknown key zones.a.colour"]),
])
def test_bad_zones_are_named_and_nothing_is_written(tmp_path: Path, sent, words) -> None:
    with pytest.raises(ConfigError) as exc:
        zones_from_json(sent, Config())
    assert all(w in str(exc.value) for w in words), str(exc.value)
