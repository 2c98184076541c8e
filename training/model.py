"""The two networks we compare: a fully-convolutional score-map CNN and the dense baseline.

Why a CNN: a dense layer on a 200x100 picture needs 200*100*100 + 100 = 2,000,100 weights
in its first layer alone and must be retrained for every input size; convolution shares a
3x3 kernel across the picture, so the CNN below has ~30 k weights in total and runs on a
frame of any size with one invoke, producing one score per stride step.
"""

from __future__ import annotations

from dataclasses import dataclass

WINDOW_HEIGHT = 40
WINDOW_WIDTH = 100


@dataclass(frozen=True)
class CnnSpec:
    filters: tuple[int, ...] = (8, 16, 32)
    head_filters: int = 24
    dropout: float = 0.2

    @property
    def stride(self) -> int:
        return 2 ** len(self.filters)


def head_kernel(spec: CnnSpec) -> tuple[int, int]:
    """Size of the layer that sees the whole window: what is left of 40x100 after the trunk."""
    h, w = WINDOW_HEIGHT, WINDOW_WIDTH
    for _ in spec.filters:
        h, w = (h - 2) // 2, (w - 2) // 2
    return h, w


def build_cnn(spec: CnnSpec = CnnSpec()):
    """Valid convolutions only, so the score for cell (r, c) of a big frame equals the score
    of the 40x100 crop at (r*stride, c*stride): window training = dense inference."""
    import keras
    from keras import layers

    inp = keras.Input(shape=(None, None, 1), name="image")
    x = inp
    for i, f in enumerate(spec.filters):
        x = layers.Conv2D(f, 3, padding="valid", use_bias=False, name=f"conv{i + 1}")(x)
        x = layers.BatchNormalization(name=f"bn{i + 1}")(x)
        x = layers.ReLU(name=f"relu{i + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = layers.Conv2D(spec.head_filters, head_kernel(spec), padding="valid", use_bias=False, name="window")(x)
    x = layers.BatchNormalization(name="bn_window")(x)
    x = layers.ReLU(name="relu_window")(x)
    x = layers.Dropout(spec.dropout, name="dropout")(x)
    out = layers.Conv2D(1, 1, name="logit")(x)  # logits; sigmoid applied on the Pi in float
    return keras.Model(inp, out, name="car_scoremap_cnn")


def build_dense(hidden: int = 100):
    """The seed's baseline: flatten -> 100 hidden -> 1. Fixed input size by construction."""
    import keras
    from keras import layers

    inp = keras.Input(shape=(WINDOW_HEIGHT, WINDOW_WIDTH, 1), name="image")
    x = layers.Flatten()(inp)
    x = layers.Dense(hidden, activation="relu", name="hidden")(x)
    x = layers.Dense(1, name="logit")(x)
    out = layers.Reshape((1, 1, 1))(x)  # same output layout as the CNN's score map
    return keras.Model(inp, out, name="dense_baseline")


def dense_first_layer_weights(height: int, width: int, hidden: int = 100) -> int:
    """Weights + biases of a dense first layer on a height x width greyscale picture."""
    return height * width * hidden + hidden


def first_layer_params(model) -> int:
    for layer in model.layers:
        if layer.count_params() > 0:
            return int(layer.count_params())
    return 0
