"""CenterNet losses on the packed targets `training.canvas.targets` writes.

heat target: [..., 0] Gaussian (1 at a car's centre cell), [..., 1] weight (0 = ignore);
box target: [..., :4] encoding (edge.head), [..., 4] mask (1 at centre cells).
"""

from __future__ import annotations

FOCAL_ALPHA = 2.0  # CenterNet's penalty-reduced focal loss exponents
FOCAL_BETA = 4.0


def heat_loss(y_true, y_pred):
    """Penalty-reduced focal loss, normalised by the number of cars in the batch."""
    import keras.ops as K

    gt, weight = y_true[..., 0:1], y_true[..., 1:2]
    p = K.clip(K.sigmoid(y_pred), 1e-4, 1 - 1e-4)
    pos = K.cast(gt >= 1.0, "float32")
    pos_loss = -K.log(p) * (1 - p) ** FOCAL_ALPHA * pos
    neg_loss = -K.log(1 - p) * p ** FOCAL_ALPHA * (1 - gt) ** FOCAL_BETA * (1 - pos) * weight
    n = K.maximum(K.sum(pos), 1.0)
    return (K.sum(pos_loss) + K.sum(neg_loss)) / n


def box_loss(y_true, y_pred):
    """L1 on offsets and log sizes at centre cells only."""
    import keras.ops as K

    mask = y_true[..., 4:5]
    err = K.abs(y_true[..., :4] - y_pred) * mask
    return K.sum(err) / K.maximum(K.sum(mask), 1.0)
