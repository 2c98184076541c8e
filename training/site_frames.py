"""A YOLO folder from a video and label files that name its frames by index.

The proof that fine-tuning adapts the detector to one camera uses the shared highway clip
as "a user's camera". The clip stays in ../shared; what is checked in is only the labels
(`training/sites/highway/labels/frame_000123.txt`, YOLO lines, + `classes.yaml`). This
writes `OUT/images/frame_000123.png` for every labelled index and copies the labels, so
the result is an ordinary YOLO folder (frame numbers in the names keep time order).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from training.datasets import DatasetError

FRAME_NAME = re.compile(r"^frame_(\d{6})\.txt$")


def materialise(video: Path, labels: Path, out: Path) -> dict[str, int]:
    import av

    wanted = {}
    for f in sorted((labels / "labels").glob("*.txt")):
        m = FRAME_NAME.match(f.name)
        if not m:
            raise DatasetError(f"{f}: label files are named frame_NNNNNN.txt (the frame's index in the video)")
        wanted[int(m.group(1))] = f
    if not wanted:
        raise DatasetError(f"{labels / 'labels'} holds no frame_NNNNNN.txt label files")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for name in ("classes.yaml", "data.yaml"):
        if (labels / name).is_file():
            shutil.copy(labels / name, out / name)
    found = 0
    with av.open(str(video)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i in wanted:
                img = frame.to_ndarray(format="gray")
                Image.fromarray(np.ascontiguousarray(img)).save(out / "images" / f"frame_{i:06d}.png")
                shutil.copy(wanted[i], out / "labels" / wanted[i].name)
                found += 1
            if i >= max(wanted):
                break
    if found != len(wanted):
        missing = sorted(set(wanted) - {int(p.stem[6:]) for p in (out / "images").glob("*.png")})
        raise DatasetError(f"{video} has no frames {missing[:5]} that {labels} labels")
    return {"frames": found}
