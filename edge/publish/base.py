"""The publisher family: where events and presence state go (file, MQTT, ...)."""

from __future__ import annotations

import abc
from typing import Any

from edge.events import Event

# Keys of the stats dict handed to publish_stats that consumers read by name (the Home
# Assistant sensors' value templates). The daemon writes them, ha_discovery reads them.
STATS_FPS_KEY = "fps"
STATS_LATENCY_P95_KEY = "latency_p95_ms"

# What close() may take by default: the publishers' share of the daemon's SIGTERM shutdown,
# which must fit 2 s even when the broker hangs (the rest: final stats, source, HTTP).
CLOSE_TIMEOUT_S = 1.0


class Publisher(abc.ABC):
    """Receives events and state; must never block the frame loop for long or raise on a
    transient outage (queue and retry instead)."""

    def start(self) -> None:  # noqa: B027
        """Take what only one publisher may hold at a time (the MQTT queue file, its client
        id on the broker). build_publishers starts what it builds; a reload starts the new
        publishers only after closing the old ones. Default: nothing to take."""

    @abc.abstractmethod
    def publish_event(self, event: Event) -> None:
        """Deliver one presence event (at least once)."""

    def publish_state(self, zone: str, present: bool, score: float) -> None:  # noqa: B027
        """Current presence of one zone (MQTT retains it); default: ignore."""

    def publish_stats(self, stats: dict[str, Any]) -> None:  # noqa: B027
        """Periodic latency/fps summary (the structured latency line); default: ignore."""

    def publish_snapshot(self, jpeg: bytes) -> None:  # noqa: B027
        """The annotated snapshot (JPEG bytes) for a Home Assistant camera; default: ignore."""

    def forget_zones(self, zones: list[str]) -> None:  # noqa: B027
        """Zones a reload removed: drop what was published about them; default: nothing."""

    def flush(self, timeout_s: float = 1.0) -> None:  # noqa: B027
        """Push out anything queued, waiting at most timeout_s."""

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:  # noqa: B027
        """Flush what timeout_s allows, release resources; safe to call twice.

        Bounded because it runs inside the SIGTERM shutdown, which systemd times."""
