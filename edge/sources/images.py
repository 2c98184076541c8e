"""A folder of pictures played as a camera: replay captured frames or a labelled set.

Pictures are read in natural name order (img2 before img10), converted to greyscale and
fitted to the configured size. A picture that cannot be decoded is skipped with one
warning and left out of later loops: one bad file in a folder of thousands of captures
should not stop a replay, but a folder with nothing readable is a setup error.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from edge.config import ConfigError, SourceConfig
from edge.frame import Frame
from edge.pictures import PICTURE_SUFFIXES
from edge.sources._util import Pacer, fit_grey
from edge.sources.base import FrameSource, SourceError, SourceExhausted

log = logging.getLogger(__name__)



def natural_key(name: str) -> list[object]:
    """Sort key that orders embedded numbers by value: img2 < img10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_pictures(folder: Path) -> list[Path]:
    """Supported pictures directly in `folder`, in natural name order."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PICTURE_SUFFIXES]
    return sorted(files, key=lambda p: natural_key(p.name))


class ImageFolderSource(FrameSource):
    """Frames from the pictures in a folder, optionally looped and paced at source.fps."""

    def __init__(self, cfg: SourceConfig, *, stop_event: threading.Event | None = None) -> None:
        if not cfg.path:
            raise ConfigError("source.path must name a folder of pictures when source.kind = 'images'")
        self.cfg = cfg
        self.folder = Path(cfg.path)
        self._pacer = Pacer(cfg.fps, stop_event) if cfg.pace else None
        self._files: list[Path] | None = None
        self._position = 0
        self._next_id = 0
        self.skipped: list[Path] = []  # pictures that could not be decoded

    def open(self) -> None:
        if self._files is not None:
            return
        if not self.folder.is_dir():
            what = "is a file, not a folder" if self.folder.exists() else "does not exist"
            raise ConfigError(f"source.path = {str(self.folder)!r} {what}; it must be a folder of pictures")
        files = list_pictures(self.folder)
        if not files:
            raise ConfigError(
                f"source.path = {str(self.folder)!r} contains no pictures "
                f"(looked for {', '.join(sorted(PICTURE_SUFFIXES))})"
            )
        self._files = files
        self._position = 0
        log.debug("image source %s: %d pictures", self.folder, len(files))

    def close(self) -> None:
        self._files = None

    def _load(self, path: Path) -> np.ndarray | None:
        """The picture as greyscale at the configured size, or None (with a warning) if unreadable."""
        try:
            with Image.open(path) as img:
                grey = img.convert("L")
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError,
                SyntaxError) as exc:
            log.warning("skipping unreadable picture %s: %s", path, exc)
            return None
        return fit_grey(np.asarray(grey), self.cfg.width, self.cfg.height)

    def _next_image(self) -> np.ndarray:
        files = self._files
        if files is None:
            raise SourceError(f"image source {self.folder}: read() before open()")
        while True:
            if not files:
                raise ConfigError(f"source.path = {str(self.folder)!r}: none of its pictures can be decoded")
            if self._position >= len(files):
                if not self.cfg.loop:
                    raise SourceExhausted(f"all pictures in {self.folder} delivered (source.loop = false)")
                self._position = 0
            path = files[self._position]
            image = self._load(path)
            if image is not None:
                self._position += 1
                return image
            del files[self._position]  # drop it so a loop does not warn about it forever
            self.skipped.append(path)

    def read(self) -> Frame:
        image = self._next_image()
        if self._pacer is not None:
            self._pacer.wait()
        frame_id = self._next_id
        self._next_id += 1
        return Frame(
            image=image,
            timestamp_ns=time.monotonic_ns(),
            frame_id=frame_id,
        )
