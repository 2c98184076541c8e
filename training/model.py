"""The networks we compare: the centre-heatmap car detector and the seed's dense baseline.

Why a CNN: a dense layer on a 200x100 picture needs 200*100*100 + 100 = 2,000,100 weights
in its first layer alone and must be retrained for every input size; convolution shares a
small kernel across the picture, so the detector below has ~120 k weights in total and runs
on a frame of any size (a multiple of 64, which the Pi pads to) with one invoke.

The detector (CenterNet-style, one stride-8 output): a patchify stem, depthwise-separable
stages down to stride 64 (5x5 depthwise in the coarse ones) with a whole-picture context
vector, and a small top-down path (FPN) that brings that context back to stride 8. Cars
from ~16 px to the whole frame share one head: a 16 px car needs the stride-8 grid, a car
filling the frame needs a receptive field wider than itself (a stride-32 version, 5 layers
fewer, boxed Open Images' big cars at ~half their size and missed them).
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.head import BOX_CHANNELS, HEAT_CHANNELS

INPUT_MULTIPLE = 64  # the input must be a multiple of the coarsest stride (the Pi pads to it)
# An epoch is only a few dozen batches: Keras' default 0.99 lets the moving statistics
# lag the weights for several epochs; 0.9 tracks them within one.
BN_MOMENTUM = 0.9
HEAT_PRIOR_BIAS = -2.19  # sigmoid = 0.1: focal-loss practice, stable first steps


@dataclass(frozen=True)
class DetectorSpec:
    stem: int = 24  # 4x4 stride-4 patchify stem: few full-resolution outputs to requantise on int8
    s4: int = 32
    s8: int = 48
    s16: int = 64
    s32: int = 96
    s64: int = 128
    fpn: int = 48
    head: int = 32
    top_down: bool = True  # False: heads on the stride-8 trunk alone (the alternative the report compares)


ARCHS = {"fpn": DetectorSpec(), "plain": DetectorSpec(top_down=False)}


def _bn_relu(x, name: str):
    from keras import layers

    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _sep(x, filters: int, name: str, stride: int = 1, kernel: int = 3):
    """Depthwise kxk + pointwise 1x1: a ninth (3x3) of the MACs of a full convolution. The coarse
    stages use 5x5: at stride 32 each adds 128 px of receptive field for a few k MACs."""
    from keras import layers

    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = _bn_relu(x, f"{name}_dw")
    x = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pw")(x)
    return _bn_relu(x, f"{name}_pw")


def _pw(x, filters: int, name: str):
    from keras import layers

    return _bn_relu(layers.Conv2D(filters, 1, use_bias=False, name=name)(x), name)


def _double(t):
    import tensorflow as tf

    return tf.image.resize(t, tf.shape(t)[1:3] * 2, method="nearest")


def _upsample(x, name: str):
    """Nearest-neighbour x2 as TFLite's RESIZE_NEAREST_NEIGHBOR. Keras' UpSampling2D becomes
    TILE v3, which the runtimes' reference kernels (what `make pi-sim` uses to explain an
    arm64/x86 difference) refuse to load, and which tflite-runtime 2.14 runs ~40x slower
    than ai-edge-litert (25 ms vs 0.6 ms per invoke measured by `edge bench`)."""
    from keras import layers

    return layers.Lambda(_double, output_shape=_doubled_shape, name=name)(x)


def _doubled_shape(shape):
    return (shape[0], *(None if d is None else 2 * d for d in shape[1:3]), shape[3])


def build_detector(spec: DetectorSpec = DetectorSpec(), height: int | None = None, width: int | None = None):
    """Greyscale in (pixel/255), two outputs: heat logits (1 ch) and box encoding (4 ch).

    Any input size by default (multiples of INPUT_MULTIPLE); a fixed size for MAC counting.
    """
    import keras
    from keras import layers

    inp = keras.Input(shape=(height, width, 1), name="image")
    x = layers.Conv2D(spec.stem, 4, strides=4, padding="valid", use_bias=False, name="stem")(inp)
    x = _bn_relu(x, "stem")
    x = _sep(x, spec.s4, "s4")
    x = _sep(x, spec.s8, "s8a", stride=2)
    c3 = _sep(x, spec.s8, "s8b")
    if spec.top_down:
        x = _sep(c3, spec.s16, "s16a", stride=2)
        c4 = _sep(x, spec.s16, "s16b", kernel=5)
        x = _sep(c4, spec.s32, "s32a", stride=2, kernel=5)
        c5 = _sep(x, spec.s32, "s32b", kernel=5)
        x = _sep(c5, spec.s64, "s64a", stride=2, kernel=5)
        c6 = _sep(x, spec.s64, "s64b", kernel=5)
        # Whole-picture context (a car filling the frame is wider than any receptive field).
        g = layers.GlobalAveragePooling2D(keepdims=True, name="context_pool")(c6)
        c6 = layers.Add(name="context_add")([c6, _pw(g, spec.s64, "context")])
        p = _pw(c6, spec.fpn, "lat6")
        for c, name in ((c5, "5"), (c4, "4"), (c3, "3")):
            p = layers.Add(name=f"td{name}")([_pw(c, spec.fpn, f"lat{name}"), _upsample(p, f"up{name}")])
            p = _sep(p, spec.fpn, f"p{name}", kernel=5 if name != "3" else 3)
        p3 = p
    else:
        p3 = _sep(c3, spec.fpn, "p3")
    h = _sep(p3, spec.head, "heat_head")
    heat = layers.Conv2D(HEAT_CHANNELS, 1, name="heat",
                         bias_initializer=keras.initializers.Constant(HEAT_PRIOR_BIAS))(h)
    b = _sep(p3, spec.head, "box_head")
    box = layers.Conv2D(BOX_CHANNELS, 1, name="box")(b)
    return keras.Model(inp, {"heat": heat, "box": box}, name="car_centre_detector")


def build_dense(hidden: int = 100):
    """The seed's baseline: flatten -> 100 hidden -> 1 on a 100x40 window. Fixed input size."""
    import keras
    from keras import layers

    from training.datasets import WINDOW_HEIGHT, WINDOW_WIDTH

    inp = keras.Input(shape=(WINDOW_HEIGHT, WINDOW_WIDTH, 1), name="image")
    x = layers.Flatten()(inp)
    x = layers.Dense(hidden, activation="relu", name="hidden")(x)
    x = layers.Dense(1, name="logit")(x)
    return keras.Model(inp, x, name="dense_baseline")


def dense_first_layer_weights(height: int, width: int, hidden: int = 100) -> int:
    """Weights + biases of a dense first layer on a height x width greyscale picture."""
    return height * width * hidden + hidden


def first_layer_params(model) -> int:
    for layer in model.layers:
        if layer.count_params() > 0:
            return int(layer.count_params())
    return 0
