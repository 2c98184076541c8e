"""Capture policy: which camera frames are worth a person's labelling time, with box proposals.

Three kinds of frame are kept (edge.capture_store writes them and keeps the folder under its
size cap):

- "uncertain": the top score lies within uncertain_margin of the detector's threshold,
  where the model is most often wrong and learns most from a label;
- "disagreement": the model and motion (background subtraction against the daemon's own
  background of this camera) see different cars, and differently from the last check: a
  moving car the model missed, a box where nothing moves;
- "random": a trickle (random_per_hour), so the training set also holds ordinary frames the
  model gets right, at times no rule would pick (night, rain).

Uncertain and disagreement frames share one rate limit (min_interval_s): a doubtful car that
lingers would otherwise be saved at the frame rate.

Each saved frame carries its proposals (edge.autolabel.propose: model boxes plus moving
blobs no box explains), so the user corrects instead of drawing every box.

The frame loop only decides; a writer thread makes the proposals and writes the PNG and its
sidecar. A save costs 10-20 ms on the workstation and an fsync on an SD card can take far
longer (p95 128 ms measured here with 1000 frames in the folder): in the loop that would be
a dropped frame at every save. `python -m edge.capture_bench --video CLIP` measures what
the loop pays.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from pathlib import Path

import numpy as np

from edge import autolabel
from edge.capture_store import CaptureStore
from edge.config import CaptureConfig
from edge.events import Box

log = logging.getLogger(__name__)

UNCERTAIN, DISAGREEMENT, RANDOM = "uncertain", "disagreement", "random"


def median_u8(samples: list[np.ndarray]) -> np.ndarray:
    """Per-pixel median of uint8 frames, equal to edge.autolabel.background(samples).

    np.median sorts every pixel's column in float (17 ms for 9 frames of 320x240 on the
    workstation, a visible hitch on a Pi every time a sample arrives); a partial bubble-sort
    network of elementwise min/max does the same in 0.4 ms. Even counts average the two
    middle values rounding down, as np.median(...).astype(uint8) does.
    """
    s = [np.array(x, dtype=np.uint8, copy=True) for x in samples]
    n = len(s)
    for p in range(n - (n - 1) // 2):  # after p passes the p largest sit sorted at the end
        for j in range(n - 1 - p):
            lo = np.minimum(s[j], s[j + 1])
            np.maximum(s[j], s[j + 1], out=s[j + 1])
            s[j] = lo
    if n % 2:
        return s[n // 2]
    return ((s[n // 2 - 1].astype(np.uint16) + s[n // 2]) // 2).astype(np.uint8)


class BackgroundModel:
    """The empty scene: per-pixel median of `size` frames sampled every `every` offered frames.

    Samples spread over time keep a passing car out of the median; it is recomputed only when
    a sample arrives, so the cost per frame stays a fraction of a millisecond (see median_u8).
    """

    def __init__(self, every: int, size: int) -> None:
        self.every = every
        self.size = size
        self._samples: list[np.ndarray] = []
        self._seen = 0
        self.bg: np.ndarray | None = None

    def offer(self, image: np.ndarray) -> None:
        if self._seen % self.every == 0:
            if self._samples and self._samples[0].shape != image.shape:
                self._samples.clear()  # processing size changed: old samples mean nothing
            self._samples.append(np.array(image, copy=True))  # the source may reuse its buffer
            del self._samples[: -self.size]
            if len(self._samples) >= 3:  # a median of fewer is no better than one frame
                self.bg = median_u8(self._samples)
        self._seen += 1


_PENDING_MAX = 4  # frames waiting for the writer; more are dropped (and counted), never queued up


class FrameCapture:
    """Offered every inferred frame; saves the few worth labelling. A no-op unless `capture.enabled`.

    close() (daemon shutdown, or a reload replacing this capture) writes what is pending.
    """

    def __init__(self, cfg: CaptureConfig, threshold: float, rng: random.Random | None = None) -> None:
        self.cfg = cfg
        self.threshold = threshold  # the detector's: a model with another threshold moves the band along
        self.store = CaptureStore(Path(cfg.dir), cfg.max_bytes)
        self.background = BackgroundModel(cfg.background_every, cfg.background_frames)
        self._rng = rng or random.Random()
        self._last_save: float | None = None  # uncertain/disagreement; None: the first may go at once
        self._last_offer: float | None = None
        self._offers = 0
        self._disagreeing = 0  # boxes only one of model and motion saw, at the last check
        self.saved: dict[str, int] = {UNCERTAIN: 0, DISAGREEMENT: 0, RANDOM: 0}
        self.dropped = 0  # chosen, but the writer was still busy with earlier frames
        self._pending: queue.Queue[tuple | None] = queue.Queue(_PENDING_MAX)
        self._writer: threading.Thread | None = None

    def offer(self, image: np.ndarray, frame_id: int, wall_time: float, top_score: float, boxes: list[Box],
              now: float | None = None) -> str | None:
        """Keep this frame if it is worth labelling: returns why (it is written in the
        background, see flush), or None."""
        if not self.cfg.enabled:
            return None
        now = time.monotonic() if now is None else now
        self.background.offer(image)
        reason, proposals = self._reason(image, float(top_score), boxes, now)
        self._last_offer = now
        if reason is None:
            return None
        if reason != RANDOM:
            self._last_save = now
        job = (np.array(image, copy=True), self.background.bg, list(boxes), proposals, frame_id, wall_time,
               reason, float(top_score))
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="capture-writer", daemon=True)
            self._writer.start()
        try:
            self._pending.put_nowait(job)
        except queue.Full:
            self.dropped += 1
            return None
        return reason

    def _write_loop(self) -> None:
        while (job := self._pending.get()) is not None:
            try:
                self._write(*job)
            except Exception:  # a full or read-only disk must not end the capture for good
                log.exception("capture: saving a frame to %s failed", self.store.folder)
            finally:
                self._pending.task_done()
        self._pending.task_done()

    def _write(self, image: np.ndarray, bg: np.ndarray | None, boxes: list[Box],
               proposals: list[autolabel.Proposal] | None, frame_id: int, wall_time: float, reason: str,
               top_score: float) -> None:
        if proposals is None:
            proposals = autolabel.propose(image, bg, boxes)
        if self.store.add(image, wall_time, frame_id, reason, top_score, [p.to_dict() for p in proposals]):
            self.saved[reason] += 1

    def flush(self) -> None:
        """Wait until every chosen frame is written."""
        if self._writer is not None:
            self._pending.join()

    def close(self, timeout_s: float = 2.0) -> None:
        """Write what is pending (at most timeout_s) and stop the writer; safe to call twice."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        self._pending.put(None)
        writer.join(timeout_s)
        if writer.is_alive():
            log.warning("capture: the writer did not finish within %.1f s; pending frames are lost", timeout_s)

    def _reason(self, image: np.ndarray, top: float, boxes: list[Box], now: float
                ) -> tuple[str | None, list[autolabel.Proposal] | None]:
        cfg = self.cfg
        self._offers += 1
        due = self._last_save is None or now - self._last_save >= cfg.min_interval_s
        if due and cfg.uncertain_margin > 0 and abs(top - self.threshold) <= cfg.uncertain_margin:
            return UNCERTAIN, None
        bg = self.background.bg
        # Background subtraction costs milliseconds: only when a save could follow, and only
        # every disagreement_every-th frame.
        if due and cfg.disagreement and bg is not None and self._offers % cfg.disagreement_every == 0:
            proposals = autolabel.propose(image, bg, boxes)
            n = autolabel.disagreement(proposals)
            # Only a *new* disagreement: a parked car the model sees (and motion cannot) would
            # otherwise fill the folder with the same frame every min_interval_s.
            changed, self._disagreeing = n != self._disagreeing, n
            if n and changed:
                return DISAGREEMENT, proposals
        # A Poisson trickle: the chance of this frame is the rate times the time it covers.
        if cfg.random_per_hour > 0 and self._last_offer is not None and \
                self._rng.random() < cfg.random_per_hour * max(0.0, now - self._last_offer) / 3600.0:
            return RANDOM, None
        return None, None
