"""Silence native (C++) writes to stderr around TensorFlow's noisiest calls.

TensorFlow 2.21 logs through absl before `TF_CPP_MIN_LOG_LEVEL` is read ("All log messages
before absl::InitializeLog()", oneDNN and CUDA notices) and the TFLite converter prints
its settings from C++: none of it is for a user, and Python exceptions still carry the
errors. `--verbose` leaves stderr alone.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

VERBOSE = False  # set by the CLI's --verbose


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    if VERBOSE:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def import_tensorflow() -> None:
    with native_stderr_silenced():
        import tensorflow  # noqa: F401
