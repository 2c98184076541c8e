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
# An epoch is only ~40 batches: with Keras' 0.99 the moving statistics lag the weights for
# several epochs and held-out accuracy swings; 0.9 tracks them within an epoch.
BN_MOMENTUM = 0.9


@dataclass(frozen=True)
class CnnSpec:
    """Patchify stem, depthwise-separable stages, then the window head.

    The stem is a `stem` x `stem` convolution with stride `stem` (non-overlapping patches):
    at full resolution every output element costs a requantisation in int8, so the fewer
    full-resolution outputs the better; this stem produces 1/16 of them. The 3x3 stages are
    depthwise + 1x1 (a ninth of the MACs of a full 3x3); a 2x2 max-pool follows the stages
    flagged in `pools`. The head conv covering what is left of the window is kept narrow.
    """

    filters: tuple[int, ...] = (16, 24, 32)  # stem, then one separable 3x3 stage each
    pools: tuple[bool, ...] = (False, True, False)  # 2x2 max-pool after stage i
    stem: int = 4
    head_filters: int = 16
    dropout: float = 0.2

    @property
    def stride(self) -> int:
        return self.stem * 2 ** sum(self.pools)


def head_kernel(spec: CnnSpec) -> tuple[int, int]:
    """Size of the layer that sees the whole window: what is left of 40x100 after the trunk."""
    h, w = (WINDOW_HEIGHT - spec.stem) // spec.stem + 1, (WINDOW_WIDTH - spec.stem) // spec.stem + 1
    for pool in spec.pools[1:]:
        h, w = h - 2, w - 2  # 3x3 valid depthwise
        if pool:
            h, w = h // 2, w // 2
    return h, w


def _bn_relu(x, name: str):
    from keras import layers

    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"bn{name}")(x)
    return layers.ReLU(name=f"relu{name}")(x)


def build_cnn(spec: CnnSpec = CnnSpec()):
    """Valid convolutions only, so the score for cell (r, c) of a big frame equals the score
    of the 40x100 crop at (r*stride, c*stride): window training = dense inference."""
    import keras
    from keras import layers

    if len(spec.pools) != len(spec.filters):
        raise ValueError(f"CnnSpec: {len(spec.filters)} filters but {len(spec.pools)} pool flags")
    inp = keras.Input(shape=(None, None, 1), name="image")
    x = layers.Conv2D(spec.filters[0], spec.stem, strides=spec.stem, padding="valid", use_bias=False, name="conv1")(inp)
    x = _bn_relu(x, "1")
    if spec.pools[0]:
        x = layers.MaxPooling2D(2, name="pool1")(x)
    for i, f in enumerate(spec.filters[1:], start=2):
        x = layers.DepthwiseConv2D(3, padding="valid", use_bias=False, name=f"dw{i}")(x)
        x = layers.Conv2D(f, 1, use_bias=False, name=f"conv{i}")(x)
        x = _bn_relu(x, str(i))
        if spec.pools[i - 1]:
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.Conv2D(spec.head_filters, head_kernel(spec), padding="valid", use_bias=False, name="window")(x)
    x = _bn_relu(x, "_window")
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
