"""The CenterNet losses on hand-made targets: what counts, what is ignored, how it is normalised."""

from __future__ import annotations

import numpy as np
import pytest

from edge.head import BOX_CHANNELS

G = 8  # cells per side of a small target map


def heat_target(centres=((3, 3),), weight: np.ndarray | None = None, blob: float = 0.0) -> np.ndarray:
    """[gaussian, weight] for one picture: 1 at each centre cell, `blob` at its 4 neighbours."""
    t = np.zeros((1, G, G, 2), np.float32)
    t[..., 1] = 1.0 if weight is None else weight
    for r, c in centres:
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            t[0, r + dr, c + dc, 0] = max(t[0, r + dr, c + dc, 0], blob)
        t[0, r, c, 0] = 1.0
    return t


def logits(centres=((3, 3),), hit: float = 9.0, miss: float = -9.0) -> np.ndarray:
    out = np.full((1, G, G, 1), miss, np.float32)
    for r, c in centres:
        out[0, r, c, 0] = hit
    return out


def value(fn, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.asarray(fn(y_true, y_pred)))


def test_a_confident_right_answer_costs_almost_nothing_and_a_wrong_one_a_lot() -> None:
    from training.losses import heat_loss

    right = value(heat_loss, heat_target(), logits())
    assert right < 1e-3
    assert value(heat_loss, heat_target(), logits(hit=-9.0)) > 5.0  # the car missed
    fp = logits()
    fp[0, 6, 6, 0] = 9.0  # a confident centre where there is none
    assert value(heat_loss, heat_target(), fp) > 5.0


def test_ignored_cells_count_neither_way() -> None:
    from training.losses import heat_loss

    weight = np.ones((G, G), np.float32)
    weight[6, 6] = 0.0  # e.g. a bus: neither car nor background
    fp = logits()
    fp[0, 6, 6, 0] = 9.0
    assert value(heat_loss, heat_target(weight=weight), fp) == pytest.approx(
        value(heat_loss, heat_target(weight=weight), logits()), abs=1e-6)


def test_a_peak_beside_the_centre_costs_less_than_one_far_away() -> None:
    """Penalty reduction: a cell on the car's Gaussian (0.8 here) is nearly a centre."""
    from training.losses import heat_loss

    near, far = logits(), logits()
    near[0, 3, 4, 0] = 2.0
    far[0, 6, 6, 0] = 2.0
    t = heat_target(blob=0.8)
    assert value(heat_loss, t, near) < 0.01 * value(heat_loss, t, far)


def test_normalised_by_the_number_of_cars() -> None:
    """Missing one of two cars costs half of missing one of one."""
    from training.losses import heat_loss

    one = value(heat_loss, heat_target(((3, 3),)), logits(((3, 3),), hit=-9.0))
    two_one_missed = heat_target(((1, 1), (5, 5)))
    pred = logits(((1, 1),))
    assert value(heat_loss, two_one_missed, pred) == pytest.approx(one / 2, rel=1e-3)


def test_box_loss_is_the_mean_l1_at_centre_cells_only() -> None:
    from training.losses import box_loss

    t = np.zeros((1, G, G, BOX_CHANNELS + 1), np.float32)
    t[0, 2, 2] = [0.1, -0.2, 1.0, 2.0, 1.0]
    t[0, 5, 5] = [0.0, 0.0, 3.0, 1.0, 1.0]
    pred = np.full((1, G, G, BOX_CHANNELS), 7.0, np.float32)  # wrong everywhere else: not counted
    pred[0, 2, 2] = [0.1, -0.2, 1.5, 2.0]  # 0.5 off
    pred[0, 5, 5] = [0.0, 0.0, 3.0, 0.0]  # 1.0 off
    assert value(box_loss, t, pred) == pytest.approx((0.5 + 1.0) / 2)
    assert value(box_loss, np.zeros_like(t), pred) == 0.0  # no car: no box loss
