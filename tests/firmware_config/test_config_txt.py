"""firmware_config/config.txt: the camera fragment for the Pi's /boot/firmware/config.txt.

The firmware's parser is simple: `property=value` lines, comments only on lines of their
own. A stray end-of-line comment or a forced overlay next to auto-detection are the
mistakes that leave a Pi without a camera, so they are checked here.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FRAGMENT = REPO / "firmware_config" / "config.txt"
SENSORS = ("imx219", "imx477", "imx708")


def active_lines() -> list[str]:
    return [ln.strip() for ln in FRAGMENT.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_auto_detect_is_on_and_is_the_only_active_setting() -> None:
    assert active_lines() == ["camera_auto_detect=1"]


def test_active_lines_are_plain_property_value() -> None:
    for line in active_lines():
        assert re.fullmatch(r"[a-z_]+=[^\s#]+", line), f"{line!r}: no spaces, no end-of-line comments"


def test_overlays_for_common_sensors_are_there_commented_out() -> None:
    text = FRAGMENT.read_text()
    for sensor in SENSORS:
        assert re.search(rf"^#dtoverlay={sensor}$", text, re.M), f"#dtoverlay={sensor} missing"
    # and each is explained on the line before it
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#dtoverlay="):
            assert lines[i - 1].startswith("# ") and len(lines[i - 1]) > 10, f"no note above {line}"


def test_says_where_it_goes() -> None:
    text = FRAGMENT.read_text()
    assert "/boot/firmware/config.txt" in text and "Bookworm" in text and "Trixie" in text
    assert "camera_auto_detect=0" in text, "explains that a forced overlay needs auto-detect off"
