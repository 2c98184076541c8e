"""From what the daemons wrote and the recorder heard to the figures of the report.

Pure functions (no processes, no sockets) so the accounting itself is unit-tested: what
counts as lost, as a duplicate, as out of order, and how a reconnect is timed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

EventKey = tuple[str, str, int]


def event_key(event: dict[str, Any]) -> EventKey:
    """Zone, kind and frame id identify an event within one daemon run (frame ids keep
    counting across loops of the clip)."""
    return (str(event["zone"]), str(event["event"]), int(event["frame_id"]))


def compare_events(produced: Sequence[dict[str, Any]], delivered: Iterable[bytes]) -> dict[str, Any]:
    """Produced (the daemon's events file) against delivered (payloads on its events topic).

    lost: produced, never delivered. duplicates: deliveries beyond the first (QoS 1 allows
    them after a reconnect). unexpected: delivered but never produced (must be 0).
    in_order: first deliveries come in the order the events were produced.
    """
    want = [event_key(e) for e in produced]
    got: list[EventKey] = []
    unreadable = 0
    for payload in delivered:
        try:
            got.append(event_key(json.loads(payload)))
        except (ValueError, KeyError, TypeError):
            unreadable += 1
    seen = Counter(got)
    want_set = set(want)
    first_order = list(dict.fromkeys(k for k in got if k in want_set))
    return {
        "produced": len(want),
        "delivered": sum(1 for k in want_set if k in seen),
        "lost": sum(1 for k in want_set if k not in seen),
        "duplicates": sum(n - 1 for n in seen.values()),
        "unexpected": sum(n for k, n in seen.items() if k not in want_set) + unreadable,
        "in_order": first_order == [k for k in want if k in seen],
    }


def reconnect_delays(connects: Sequence[float], kills: Sequence[float], restarts: Sequence[float]) -> list[float]:
    """Per broker restart: seconds from the broker listening again to this daemon's first
    connection after the kill (none if it never came back before the next kill)."""
    out = []
    for i, (killed, restarted) in enumerate(zip(kills, restarts, strict=True)):
        until = kills[i + 1] if i + 1 < len(kills) else float("inf")
        after = [c for c in connects if killed < c < until]
        if after:
            out.append(max(0.0, min(after) - restarted))
    return out


def pct(values: Sequence[float], q: float, digits: int = 3) -> float | None:
    return round(float(np.percentile(np.asarray(values, dtype=float), q)), digits) if len(values) else None


def spread(values: Sequence[float], digits: int = 1) -> dict[str, float | None]:
    """Median and max across cameras (and the count), for one line per phase."""
    return {"median": pct(values, 50, digits), "max": round(max(values), digits) if values else None,
            "n": len(values)}


def _fmt(v: Any, unit: str = "") -> str:
    return "-" if v is None else f"{v}{unit}"


def format_table(phases: Sequence[dict[str, Any]]) -> str:
    """The phases side by side, one row per figure (Markdown, as pasted into the README)."""
    rows = [
        ("daemons", lambda p: str(p["daemons"])),
        ("events produced / delivered", lambda p: f"{p['events']['produced']} / {p['events']['delivered']}"),
        ("lost", lambda p: str(p["events"]["lost"])),
        ("duplicates (QoS 1)", lambda p: str(p["events"]["duplicates"])),
        ("cameras without events", lambda p: str(p["events"]["cameras_without_events"])),
        ("reconnect p50 / p95 (s)", lambda p: f"{_fmt(p['reconnect_s']['p50'])} / {_fmt(p['reconnect_s']['p95'])}"),
        ("broker CPU (% of a core)", lambda p: _fmt(p["broker"]["cpu_percent_of_one_core"])),
        ("broker peak RSS (MB)", lambda p: _fmt(p["broker"]["peak_rss_mb"])),
        ("daemon RSS median / max (MB)",
         lambda p: f"{_fmt(p['daemon_rss_mb']['median'])} / {_fmt(p['daemon_rss_mb']['max'])}"),
        ("daemon CPU median / max (% of a core)",
         lambda p: f"{_fmt(p['daemon_cpu_percent_of_one_core']['median'])} / "
                   f"{_fmt(p['daemon_cpu_percent_of_one_core']['max'])}"),
        ("frame age p95 median / max over cameras (ms)",
         lambda p: f"{_fmt(p['frame_age_p95_ms']['median'])} / {_fmt(p['frame_age_p95_ms']['max'])}"),
        ("fps median (target)", lambda p: f"{_fmt(p['fps']['median'])} ({p['target_fps']})"),
        ("machine load (CPU % of all cores)", lambda p: _fmt(p["machine_cpu_percent"])),
    ]
    out = ["| figure | " + " | ".join(f"N={p['daemons']}" for p in phases) + " |",
           "|---|" + "---|" * len(phases)]
    out += [f"| {name} | " + " | ".join(get(p) for p in phases) + " |" for name, get in rows[1:]]
    return "\n".join(out)
