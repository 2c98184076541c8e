"""tensorflow.lite: the workstation fallback; never the default on a Pi (huge, slow import).

Imported lazily so `edge` never pulls TensorFlow in unless this runtime is chosen.
"""

INSTALL_HINT = "Install it with: pip install tensorflow (workstation only)"


def is_available() -> bool:
    """Without importing TensorFlow: once it is loaded, tflite-runtime can no longer read
    models in the same process (two TFLite builds), so probing must not load it."""
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


def interpreter_class():
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        raise ImportError("tensorflow is not installed")
    import tensorflow as tf  # noqa: PLC0415 - lazy on purpose

    return tf.lite.Interpreter


def version() -> str:
    from importlib.metadata import version as v

    return v("tensorflow")
