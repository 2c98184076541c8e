"""Annotated pictures (/snapshot.jpg, `edge detect --save`): boxes, scores and zones drawn,
whatever their size against the picture."""

from __future__ import annotations

import numpy as np
import pytest

from edge.events import Box
from edge.snapshot import BOX_COLOUR, ZONE_COLOUR, annotate, encode_snapshot_jpeg


def test_boxes_and_zones_are_drawn_in_their_colours() -> None:
    img = np.full((60, 80), 128, np.uint8)
    pic = np.asarray(annotate(img, [Box(10, 10, 30, 20, 0.9)], {"drive": (40, 30, 30, 20)}))
    assert pic.shape == (60, 80, 3)
    assert tuple(pic[10, 20]) == BOX_COLOUR and tuple(pic[30, 55]) == ZONE_COLOUR
    assert tuple(pic[50, 5]) == (128, 128, 128)


def test_zone_under_a_pixel_and_boxes_outside_do_not_fail() -> None:
    """A config's zone scaled onto a 20x12 picture can be 0.5 px wide; Pillow refuses a
    rectangle whose far corner lies before its near one, which once ended `detect --save`."""
    img = np.full((12, 20), 100, np.uint8)
    zones = {"tiny": (18.75, 10.0, 0.5, 0.5), "flat": (0.0, 0.0, 20.0, 0.25)}
    boxes = [Box(-50, -50, 10, 10, 0.5), Box(30, 2, 5, 5, 0.7), Box(-5, -5, 9, 9, 0.8)]
    pic = np.asarray(annotate(img, boxes, zones))
    assert pic.shape == (12, 20, 3)
    assert (pic == ZONE_COLOUR).all(axis=2).any()


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 4), np.uint8), [[0]]])
def test_bad_images_are_named(bad) -> None:
    with pytest.raises(ValueError, match="snapshot image must be"):
        annotate(bad, [])


def test_jpeg_bytes() -> None:
    data = encode_snapshot_jpeg(np.zeros((24, 32), np.uint8), [Box(1, 1, 10, 10, 0.5)])
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
