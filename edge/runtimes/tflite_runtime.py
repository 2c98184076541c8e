"""tflite-runtime 2.14: the last release; Python <= 3.11 only, and it breaks under NumPy 2."""

INSTALL_HINT = "Install it with: pip install tflite-runtime==2.14.0 'numpy<2' (Python <= 3.11 only)"


def interpreter_class():
    import numpy

    if int(numpy.__version__.split(".")[0]) >= 2:
        raise ImportError(f"tflite-runtime 2.14 fails under NumPy {numpy.__version__}; pin numpy<2")
    from tflite_runtime.interpreter import Interpreter

    return Interpreter


def version() -> str:
    from importlib.metadata import version as v

    return v("tflite-runtime")
