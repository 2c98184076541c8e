"""What every daemon watches: the clip at the fleet's frame rate, and zones that see cars.

The daemon paces a video at the file's own frame rate, so the clip is re-encoded once at
the wanted rate (every k-th frame: the same street at the same real-time speed, as a
camera at 2 fps would see it). Zones are not hard-coded: a probe daemon (MQTT off, no
pacing, one pass) runs the current model over that clip with candidate zones, and the
zones whose presence changed the most are kept. Any detector that finds the cars gives
usable zones this way; one that finds none is reported, not hidden.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

from loadtest.daemons import DaemonSettings, FleetDaemon
from loadtest.procs import ProcessRegistry

FRAME_ZONE = "frame"  # the daemon always reports the whole picture under this name
MIN_ZONE_EVENTS = 2  # an arrival and a departure per loop at least


class SceneError(RuntimeError):
    """The clip cannot be read/re-encoded, or the probe daemon failed."""


@dataclass(frozen=True)
class Clip:
    path: Path
    fps: float
    frames: int
    size: tuple[int, int]
    source_fps: float


def derive_clip(src: Path, dest: Path, fps: float) -> Clip:
    """Re-encode `src` keeping one frame per 1/fps seconds of its own time, at `fps`."""
    import av

    try:
        container = av.open(str(src))
    except (av.error.FFmpegError, OSError) as exc:
        raise SceneError(f"--video {src}: cannot be opened as a video: {exc}") from None
    with container:
        if not container.streams.video:
            raise SceneError(f"--video {src}: has no video stream")
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or fps)
        if fps > rate:
            raise SceneError(f"--fps {fps} is above the clip's own {rate:.2f} fps")
        step = rate / fps
        out = av.open(str(dest), "w")
        kept = 0
        with out:
            enc = out.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1000))
            enc.width, enc.height, enc.pix_fmt = stream.width, stream.height, "yuv420p"
            enc.options = {"qscale": "3"}
            for i, frame in enumerate(container.decode(stream)):
                if int(i / step) == kept:  # the first frame of each 1/fps slot
                    new = av.VideoFrame.from_ndarray(frame.to_ndarray(format="yuv420p"), format="yuv420p")
                    new.pts = kept
                    for packet in enc.encode(new):
                        out.mux(packet)
                    kept += 1
            for packet in enc.encode():
                out.mux(packet)
        if kept == 0:
            raise SceneError(f"--video {src}: no decodable frames")
        return Clip(dest, fps, kept, (stream.width, stream.height), rate)


def candidate_zones(width: int, height: int) -> dict[str, tuple[int, int, int, int]]:
    """Halves and quadrants of the processing frame: wherever the road is, some of them see it."""
    w2, h2 = width // 2, height // 2
    return {
        "left": (0, 0, w2, height), "right": (w2, 0, width - w2, height),
        "top": (0, 0, width, h2), "bottom": (0, h2, width, height - h2),
        "top_left": (0, 0, w2, h2), "top_right": (w2, 0, width - w2, h2),
        "bottom_left": (0, h2, w2, height - h2), "bottom_right": (w2, h2, width - w2, height - h2),
    }


@dataclass(frozen=True)
class Probe:
    events_per_zone: dict[str, int]  # one pass of the clip, candidates and "frame"
    chosen: dict[str, tuple[int, int, int, int]]
    seconds: float

    @property
    def events_per_loop(self) -> int:
        """Events one daemon produces per pass of the clip with the chosen zones."""
        return sum(n for z, n in self.events_per_zone.items() if z in self.chosen or z == FRAME_ZONE)


def probe_zones(registry: ProcessRegistry, settings: DaemonSettings, workdir: Path, max_zones: int = 2,
                timeout_s: float = 120.0) -> Probe:
    """One unpaced pass of the clip through a real daemon with every candidate zone."""
    cands = candidate_zones(*settings.processing)
    probe_settings = replace(settings, zones=cands)
    d = FleetDaemon("probe", workdir)
    d.write_config(probe_settings, None, pace=False, loop=False, http=False)
    t0 = time.monotonic()
    d.start(registry)
    try:
        rc = d.proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        registry.terminate([d.proc])
        raise SceneError(f"zone probe did not finish within {timeout_s} s; log: {d.log_path}") from None
    if rc != 0:
        raise SceneError(f"zone probe daemon exited with {rc}:\n{d.log_tail()}")
    counts = Counter(e["zone"] for e in d.events())
    per_zone = {z: counts.get(z, 0) for z in [FRAME_ZONE, *cands]}
    ranked = sorted((z for z in cands if per_zone[z] >= MIN_ZONE_EVENTS), key=lambda z: (-per_zone[z], z))
    chosen = {z: cands[z] for z in ranked[:max_zones]}
    return Probe(per_zone, chosen, round(time.monotonic() - t0, 2))

