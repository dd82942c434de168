"""The hub's own retained ``status``, watched: anyone who may write it (a misconfigured ACL, a
copied password) could leave ``offline`` retained over a hub that is online. The uplink
subscribes to it and, while connected, answers anything but ``online`` by publishing ``online``
again (retained), counts it and logs it once per connection. The receivers' and consoles' proof
of life is the hub's signed health; this keeps the plain flag honest too."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

ONLINE = b"online"


class OwnStatus:
    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.overwritten = 0  # times someone else's status was found and replaced
        self._logged = False

    def connected(self) -> None:
        self._logged = False

    def seen(self, payload: bytes, connected: bool) -> bool:
        """A message on the status topic: True if ``online`` must be published again."""
        if payload == ONLINE or not connected:
            return False
        self.overwritten += 1
        if not self._logged:
            self._logged = True
            log.warning(
                "someone else wrote %r to this hub's status %s: publishing online again (the"
                " broker's ACL should let only the hub write it)",
                payload[:40],
                self.topic,
            )
        return True
