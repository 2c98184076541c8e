"""Pictures and clips named on the command line, read safely: what `edge detect` consumes.

A user points `detect` at whatever they have: files, folders, globs, video clips. Each
input yields pictures one at a time; a bad one becomes an error line and the batch goes on.

Reading is bounded: a picture over MAX_PIXELS is refused before it is decoded (a 190 KB PNG
can claim 14000x14000 = 196 M pixels: a decompression bomb), and a large picture is
scaled down on read to MAX_SIDE on its longer side (JPEG decodes at a reduced size
directly), so a 10000x10000 photo never needs gigabytes.
"""

from __future__ import annotations

import glob
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 120_000_000  # refused above this (before decoding)
MAX_SIDE = 1920  # longer side after reading; boxes are reported in the original's pixels
# Every picture format Pillow reads that cameras and exporters write: the one list the
# detector, the trainer and the image-folder source use.
PICTURE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".pnm", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = {".avi", ".mp4", ".mkv", ".mov", ".h264", ".webm", ".m4v"}


class PictureError(ValueError):
    """This one picture cannot be used; the message says why."""


@dataclass
class Picture:
    label: str  # file name, or "clip.avi#frame=12"
    image: np.ndarray  # uint8 greyscale, possibly scaled down
    width: int  # original size
    height: int


def read_picture(path: Path, max_side: int = MAX_SIDE, max_pixels: int = MAX_PIXELS) -> Picture:
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own 89 M pixel default and refuses above twice that; our
            # MAX_PIXELS is the limit we state, so its warning is noise and its refusal is ours.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise PictureError(_over_limit(f"{w}x{h} = {w * h / 1e6:.0f} M pixels", max_pixels))
                k = min(1.0, max_side / max(w, h))
                if k < 1.0:
                    im.draft("L", (max(1, int(w * k)), max(1, int(h * k))))  # JPEG: decode at a reduced size
                g = im.convert("L")
                if k < 1.0:
                    g = g.resize((max(1, round(w * k)), max(1, round(h * k))), Image.BILINEAR)
                return Picture(str(path), np.asarray(g, dtype=np.uint8), w, h)
    except PictureError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's check in Image.open, above 2 x its default
        found = re.search(r"\((\d+) pixels\)", str(exc))
        what = f"{int(found.group(1)) / 1e6:.0f} M pixels" if found else "the picture"
        raise PictureError(_over_limit(what, max_pixels)) from None
    except (OSError, ValueError, UnidentifiedImageError, SyntaxError) as exc:
        raise PictureError(f"cannot read picture: {exc}") from None


def _over_limit(what: str, max_pixels: int) -> str:
    return (f"{what} is over the {max_pixels / 1e6:.0f} M pixel limit (MAX_PIXELS; a decompression bomb, or a "
            "picture far larger than a camera frame): not decoded")


def video_frames(path: Path, every: int = 1) -> Iterator[Picture]:
    import av

    n = 0
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise PictureError("cannot read video: the file has no video stream")
            for i, frame in enumerate(c.decode(video=0)):
                n += 1
                if i % every == 0:
                    img = frame.to_ndarray(format="gray")
                    yield Picture(f"{path}#frame={i}", img, img.shape[1], img.shape[0])
    except (av.error.FFmpegError, OSError) as exc:
        raise PictureError(f"cannot read video{f' after {n} frames' if n else ''}: {exc}") from None
    if n == 0:
        raise PictureError("video has no frames")


def _folder(folder: Path) -> list[Path]:
    return sorted(f for f in folder.rglob("*")
                  if f.suffix.lower() in PICTURE_SUFFIXES | VIDEO_SUFFIXES and f.is_file())


def expand(inputs: list[str]) -> Iterator[tuple[str, Path | None, str | None]]:
    """(label, path, error) per input file: folders (also those a glob matches) recurse in name
    order, globs expand."""
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = _folder(p)
            if not files:
                yield item, None, "folder holds no pictures or videos"
            for f in files:
                yield str(f), f, None
        elif p.exists():
            yield item, p, None
        elif glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                yield item, None, "no file matches this pattern"
            for m in matches:
                if Path(m).is_dir():
                    yield from ((str(f), f, None) for f in _folder(Path(m)))
                else:
                    yield m, Path(m), None
        else:
            yield item, None, "no such file or folder"


def pictures(inputs: list[str], every: int = 1) -> Iterator[Picture | tuple[str, str]]:
    """Pictures in order, or (label, error) for what cannot be read."""
    for label, path, error in expand(inputs):
        if error:
            yield label, error
            continue
        assert path is not None
        try:
            if path.suffix.lower() in VIDEO_SUFFIXES:
                yield from video_frames(path, every)
            else:
                yield read_picture(path)
        except PictureError as exc:
            yield label, str(exc)
