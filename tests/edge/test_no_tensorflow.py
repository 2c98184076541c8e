"""`edge` runs on a Pi without TensorFlow: importing every edge module must not load it."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import edge

ROOT = Path(__file__).resolve().parents[2]


def test_edge_never_imports_tensorflow():
    mods = sorted(m.name for m in pkgutil.walk_packages(edge.__path__, "edge.") if m.name != "edge.__main__")
    code = ("import importlib, sys\n"
            f"for m in {mods!r}: importlib.import_module(m)\n"
            "from edge.runtimes import available_runtimes; available_runtimes()\n"
            "bad = [m for m in sys.modules if m == 'tensorflow' or m.startswith('tensorflow.') or m == 'keras']\n"
            "print(len(sys.modules)); sys.exit(1 if bad else 0)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"TensorFlow/Keras got imported: {r.stdout} {r.stderr[-2000:]}"
    assert len(mods) > 25
