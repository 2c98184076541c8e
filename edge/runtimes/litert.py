"""ai-edge-litert: the successor of tflite-runtime; wheels for Python 3.10-3.13, NumPy 2 ok."""

INSTALL_HINT = "Install it with: pip install ai-edge-litert"


def interpreter_class():
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter


def version() -> str:
    from importlib.metadata import version as v

    return v("ai-edge-litert")
