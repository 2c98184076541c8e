"""MQTT topic names and Home Assistant discovery: what the detector announces, and where.

Kept apart from the sender because it is pure: names and JSON documents, no sockets, so
a new entity is one entry here and a topic clash is refused before anything connects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from edge import __version__
from edge.config import MqttConfig
from edge.publish import PublishSetupError
from edge.publish.base import STATS_FPS_KEY, STATS_LATENCY_P95_KEY

ONLINE, OFFLINE = "online", "offline"  # payloads of <prefix>/<camera>/status (retained; the will says offline)
ON, OFF = "ON", "OFF"  # payloads of <prefix>/<camera>/zone/<zone>/state (retained)
NODE_PREFIX = "car-detector-"  # + camera id: MQTT client id and Home Assistant node/device id

_SLUG = re.compile(r"[^A-Za-z0-9_-]+")


def slug(name: str) -> str:
    """A topic level / HA object id: no '/', '+', '#', spaces."""
    s = _SLUG.sub("_", name).strip("_")
    if not s:
        raise ValueError(f"name {name!r} has no letters or digits to build an MQTT topic from")
    return s


def check_prefix(prefix: str, key: str) -> str:
    """A topic prefix without leading/trailing '/', or a PublishSetupError naming `key`."""
    p = prefix.strip("/")
    if not p or any(c in p for c in "+#\0"):
        raise PublishSetupError(f"{key} = {prefix!r} is not a usable MQTT topic prefix; "
                                "use something like 'car-detector' (no '+', '#')")
    return p


def slug_zones(zones: list[str]) -> dict[str, str]:
    """Zone name -> topic level; two zones must not end up on one topic."""
    out: dict[str, str] = {}
    for zone in zones:
        try:
            s = slug(zone)
        except ValueError as exc:
            raise PublishSetupError(f"zones.{zone}: {exc}; rename the zone") from None
        clash = [z for z, t in out.items() if t == s]
        if clash:
            raise PublishSetupError(f"zones {clash[0]!r} and {zone!r} would share the MQTT topic "
                                    f"level {s!r}; rename one of them")
        out[zone] = s
    return out


@dataclass(frozen=True)
class Topics:
    """Every topic one detector uses; built (and checked) once from the config.

    `prefix` is <mqtt.topic_prefix>/<camera.id>: a fleet shares the topic prefix, and each
    camera's id keeps its topics, client id and Home Assistant ids apart.
    """

    prefix: str
    discovery_prefix: str
    camera_id: str
    zone_slugs: dict[str, str]

    @classmethod
    def from_config(cls, cfg: MqttConfig, camera_id: str, zones: list[str]) -> Topics:
        return cls(
            prefix=f"{check_prefix(cfg.topic_prefix, 'mqtt.topic_prefix')}/{camera_id}",
            discovery_prefix=check_prefix(cfg.discovery_prefix, "mqtt.discovery_prefix"),
            camera_id=camera_id,
            zone_slugs=slug_zones(list(dict.fromkeys(zones))),
        )

    @property
    def node_id(self) -> str:
        """Home Assistant node id and device identifier; also the MQTT client id."""
        return NODE_PREFIX + self.camera_id

    @property
    def client_id(self) -> str:
        return self.node_id

    @property
    def instance(self) -> str:
        """Retained claim of the running daemon (see MqttPublisher: duplicate camera ids)."""
        return f"{self.prefix}/instance"

    @property
    def events(self) -> str:
        return f"{self.prefix}/events"

    @property
    def status(self) -> str:
        return f"{self.prefix}/status"

    @property
    def stats(self) -> str:
        return f"{self.prefix}/stats"

    @property
    def snapshot(self) -> str:
        """JPEG bytes of the annotated snapshot: the Home Assistant camera's picture (retained)."""
        return f"{self.prefix}/snapshot"

    def state(self, zone: str) -> str:
        return f"{self.prefix}/zone/{self.zone_slugs.get(zone) or slug(zone)}/state"


def _device(topics: Topics) -> dict[str, Any]:
    return {
        "identifiers": [topics.node_id],
        "name": f"Car detector {topics.camera_id}",
        "manufacturer": "car-detector",
        "model": "int8 CNN on Raspberry Pi",
        "sw_version": __version__,
    }


def zone_discovery_topic(topics: Topics, zone: str) -> str:
    """Where a zone's binary_sensor is announced; an empty retained payload there removes it."""
    return f"{topics.discovery_prefix}/binary_sensor/{topics.node_id}/{topics.zone_slugs.get(zone) or slug(zone)}/config"


def discovery_messages(topics: Topics, camera: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """(topic, config) for each Home Assistant entity: one occupancy binary_sensor per
    zone, latency p95 and fps sensors read from the stats topic, and (camera=True) an MQTT
    camera showing the annotated snapshot."""
    avail = {"availability_topic": topics.status,
             "payload_available": ONLINE, "payload_not_available": OFFLINE}
    msgs: list[tuple[str, dict[str, Any]]] = []
    for zone, zs in topics.zone_slugs.items():
        msgs.append((zone_discovery_topic(topics, zone), {
            "name": f"{zone} occupied",
            "unique_id": f"{topics.node_id}_{zs}_occupancy",
            "device_class": "occupancy",
            "state_topic": topics.state(zone),
            "payload_on": ON,
            "payload_off": OFF,
            "qos": 1,
            **avail,
            "device": _device(topics),
        }))
    sensors = [("latency_p95", "Latency p95", STATS_LATENCY_P95_KEY, "ms", "mdi:timer-outline"),
               ("fps", "Frame rate", STATS_FPS_KEY, "fps", "mdi:speedometer")]
    for obj, name, key, unit, icon in sensors:
        msgs.append((f"{topics.discovery_prefix}/sensor/{topics.node_id}/{obj}/config", {
            "name": name,
            "unique_id": f"{topics.node_id}_{obj}",
            "state_topic": topics.stats,
            "value_template": "{{ value_json." + key + " }}",
            "unit_of_measurement": unit,
            "state_class": "measurement",
            "entity_category": "diagnostic",
            "icon": icon,
            **avail,
            "device": _device(topics),
        }))
    if camera:  # HA's MQTT camera: the payload on `topic` is the picture itself, no encoding
        msgs.append((f"{topics.discovery_prefix}/camera/{topics.node_id}/snapshot/config", {
            "name": "Snapshot",
            "unique_id": f"{topics.node_id}_snapshot",
            "topic": topics.snapshot,
            "icon": "mdi:cctv",
            **avail,
            "device": _device(topics),
        }))
    return msgs
