"""Interpreter runtimes behind one registry (one module per runtime, as Frigate does).

All three runtimes expose the same `Interpreter` API; they differ in speed (ai-edge-litert
runs int8 ~5x faster than tflite-runtime 2.14 on x86) and in which Pythons have wheels
(tflite-runtime stops at 3.11 and needs numpy<2; Trixie's 3.13 needs ai-edge-litert).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edge.runtimes import litert, tensorflow_lite, tflite_runtime

log = logging.getLogger(__name__)

RUNTIMES: dict[str, Any] = {
    "litert": litert,
    "tflite-runtime": tflite_runtime,
    "tensorflow": tensorflow_lite,
}

# `auto` tries them in the registry's order; tensorflow last: it must load after tflite-runtime.
AUTO_ORDER = tuple(RUNTIMES)
# What `model.runtime` and `--runtime` accept: the registry's names plus "auto".
RUNTIME_CHOICES = ("auto", *RUNTIMES)


class RuntimeUnavailable(RuntimeError):
    """The requested runtime is not installed (or cannot load) on this machine."""


@dataclass
class LoadedInterpreter:
    interpreter: Any
    runtime: str
    version: str


def available_runtimes() -> list[str]:
    """Runtimes that import here, in `auto` preference order."""
    found = []
    for name in AUTO_ORDER:
        mod = RUNTIMES[name]
        try:
            ok = mod.is_available() if hasattr(mod, "is_available") else bool(mod.interpreter_class())
        except Exception:  # noqa: BLE001 - any import failure means "not available"
            ok = False
        if ok:
            found.append(name)
    return found


def _load_one(name: str, model_path: Path, num_threads: int) -> LoadedInterpreter:
    mod = RUNTIMES[name]
    try:
        cls: Callable[..., Any] = mod.interpreter_class()
    except Exception as exc:  # noqa: BLE001
        raise RuntimeUnavailable(f"runtime {name!r} is not usable here: {exc}. {mod.INSTALL_HINT}") from exc
    interp = cls(model_path=str(model_path), num_threads=num_threads)
    return LoadedInterpreter(interpreter=interp, runtime=name, version=mod.version())


def load_interpreter(model_path: str | Path, runtime: str = "auto", num_threads: int = 1) -> LoadedInterpreter:
    """Create an interpreter for `model_path` with the chosen runtime; logs what was chosen."""
    model_path = Path(model_path)
    if runtime not in RUNTIME_CHOICES:
        raise ValueError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIME_CHOICES)}")
    names = AUTO_ORDER if runtime == "auto" else (runtime,)
    errors = []
    for name in names:
        try:
            loaded = _load_one(name, model_path, num_threads)
        except RuntimeUnavailable as exc:
            errors.append(str(exc))
            continue
        log.info("runtime=%s version=%s threads=%d model=%s", loaded.runtime, loaded.version, num_threads, model_path)
        return loaded
    raise RuntimeUnavailable(
        "no TFLite runtime could be loaded: " + " | ".join(errors)
        + ". Install ai-edge-litert (Python 3.10-3.13) or tflite-runtime==2.14.0 with numpy<2 (Python <= 3.11)."
    )
