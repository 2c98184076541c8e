"""Videos made from the real highway clip for the tests that need a particular file:
a short one (so a loop reopens the decoder often), an empty one, a truncated one.

Made with PyAV in the test's tmp folder, from real frames, never checked in.
"""

from __future__ import annotations

import fractions
from pathlib import Path

import av


def write_clip(source: Path, dest: Path, frames: int, fps: int = 15) -> Path:
    """The first `frames` frames of `source` re-encoded (MPEG-4 in AVI, like the original)
    at `fps`; frames = 0 gives a valid file with a video stream and no frame at all."""
    with av.open(str(source)) as src, av.open(str(dest), "w") as dst:
        stream = dst.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        dst.start_encoding()  # writes the header even when no frame follows
        for i, frame in enumerate(src.decode(video=0)):
            if i >= frames:
                break
            out = frame.reformat(width=320, height=240, format="yuv420p")
            out.pts, out.time_base = i, fractions.Fraction(1, fps)
            for packet in stream.encode(out):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)
    return dest


def truncate_clip(source: Path, dest: Path, keep: float) -> Path:
    """The first `keep` fraction of `source`'s bytes: a copy that did not finish. The header
    still announces every frame; PyAV decodes what is there and stops without an error."""
    data = source.read_bytes()
    dest.write_bytes(data[: int(len(data) * keep)])
    return dest


def announced_and_decodable(path: Path) -> tuple[int, int]:
    """(frames the header announces, frames that actually decode), for the tests' expectations."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return int(stream.frames or 0), sum(1 for _ in container.decode(stream))
