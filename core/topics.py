"""MQTT topic names: ``tuquan/v1/<commune>/<hub>/...`` (docs/topics.md)."""

from __future__ import annotations

ROOT = "tuquan/v1"


class HubTopics:
    """Every topic one hub uses, built once from its commune and id."""

    def __init__(self, commune: str, hub: str) -> None:
        self.commune = commune
        self.hub = hub
        self.base = f"{ROOT}/{commune}/{hub}"
        self.status = f"{self.base}/status"
        self.health = f"{self.base}/health"
        self.receipt = f"{self.base}/receipt"
        self.cmd_filter = f"{self.base}/cmd/+"
        self.cmd_result = f"{self.base}/cmd_result"
        # The hub publishes to it and subscribes to it: the echo proves the broker routes to us.
        self.ping = f"{self.base}/ping"

    def event(self, kind: str) -> str:
        return f"{self.base}/event/{kind}"

    def snapshot(self, event_id: str) -> str:
        return f"{self.base}/snapshot/{event_id}"


RECEIVER_LEVEL = "_receiver"  # never a hub id: hub ids start with a letter or digit


def receiver_status_topic(commune: str) -> str:
    """Retained ``{"state": "online"|"offline", ...}`` of the commune's receiver(s).

    A receiver publishes "online" each time its subscription is in place (its will says
    "offline"); a hub that sees "online" re-sends every event not yet receipted, so events
    the broker took while no receiver was subscribed are not left waiting for a timeout."""
    return f"{ROOT}/{commune}/{RECEIVER_LEVEL}/status"


def commune_event_filter(commune: str) -> str:
    """What a commune receiver subscribes to: every event of every hub of the commune
    (``commune`` is ``+`` for every commune of a province)."""
    return f"{ROOT}/{commune}/+/event/+"


def commune_snapshot_filter(commune: str) -> str:
    """Every camera snapshot (``snapshot/<event-id>``, JPEG) of every hub of the commune."""
    return f"{ROOT}/{commune}/+/snapshot/+"


PROVINCE_LEVEL = "_province"  # never a commune: communes start with a letter or digit


def province_receiver_status_topic() -> str:
    """Retained ``{"state": ...}`` of the receivers that serve several communes (a list, or
    every commune). No hub subscribes to it and no bridge carries it: a hub hears such a
    receiver on its own commune's ``receiver_status_topic``."""
    return f"{ROOT}/{PROVINCE_LEVEL}/{RECEIVER_LEVEL}/status"


def parse_hub_topic(topic: str) -> tuple[str, str, str] | None:
    """Split ``tuquan/v1/<commune>/<hub>/<rest>`` into (commune, hub, rest); None if foreign."""
    parts = topic.split("/", 4)
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != ROOT:
        return None
    return parts[2], parts[3], parts[4]
