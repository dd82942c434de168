"""Which communes a receiver serves: one (the default), a list, or every commune of the broker
(``+``), and what follows from that: its topic filters, the commune an event's topic must name,
its default client id and where it says it is online.

```toml
[receiver]
commune = "phuong-7"            # one commune
# commune = "+"                 # every commune the broker carries (a province receiver)
# communes = ["phuong-7", "xa-9"]
```

The command line takes the same as ``--commune phuong-7``, ``--commune +`` or
``--commune phuong-7,xa-9``. A commune is an MQTT topic level (1 to 63 lowercase letters,
digits, '-' or '_', starting with a letter or digit); ``+`` stands alone.

Status topics: a one-commune receiver says ``online`` on its commune's
``receiver_status_topic`` (and its will says ``offline`` there). A receiver of a list says
``online`` on each listed commune's topic and on ``province_receiver_status_topic``, where its
will is. A receiver of every commune says ``online`` on the province topic when subscribed, and
on a commune's topic the first time it receipts an event of that commune on a connection: it
cannot know a commune before one of its hubs speaks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import TuquanError
from core.topics import (
    commune_event_filter,
    commune_snapshot_filter,
    province_receiver_status_topic,
    receiver_status_topic,
)
from settings.validators import mqtt_topic_level

EVERY = "+"
_MAX_CLIENT_ID_LIST = 64  # a longer list of communes is named by a digest in the client id


class ScopeError(TuquanError, ValueError):
    """A commune or a list of communes that a receiver cannot serve; the text says why."""


def commune_name(value: str) -> str:
    """One commune of a list: a topic level (``ScopeError`` otherwise)."""
    if value == EVERY:
        raise ScopeError("'+' (every commune) stands alone, not in a list of communes")
    try:
        return mqtt_topic_level(value)
    except ValueError as exc:
        raise ScopeError(str(exc)) from None


@dataclass(frozen=True)
class CommuneScope:
    """``communes`` in the order given; empty means every commune (``+``)."""

    communes: tuple[str, ...]

    @classmethod
    def of(cls, value: str | Sequence[str] | CommuneScope) -> CommuneScope:
        """From ``"phuong-7"``, ``"+"``, ``"a,b"`` or ``["a", "b"]``; ScopeError if invalid."""
        if isinstance(value, CommuneScope):
            return value
        if isinstance(value, str):
            if value == EVERY:
                return cls(())
            names = [part.strip() for part in value.split(",")] if "," in value else [value]
        else:
            names = list(value)
        if not names:
            raise ScopeError("name at least one commune (or '+' for every commune)")
        if len(names) == 1 and names[0] == EVERY:
            return cls(())
        seen: set[str] = set()
        for name in names:
            if not isinstance(name, str):
                raise ScopeError(f"{name!r} is not a commune name")
            commune_name(name)
            if name in seen:
                raise ScopeError(f"commune {name!r} is named twice")
            seen.add(name)
        return cls(tuple(names))

    @property
    def every(self) -> bool:
        return not self.communes

    @property
    def single(self) -> str | None:
        """The commune, when there is exactly one."""
        return self.communes[0] if len(self.communes) == 1 else None

    @property
    def label(self) -> str:
        """How logs, thread names and client ids name it: the commune, ``+``, or ``a+b``."""
        return EVERY if self.every else "+".join(self.communes)

    def accepts(self, commune: str) -> bool:
        """Whether an event on ``commune``'s topics is this receiver's to store. A topic level
        that is not a commune name (``_province``, an upper-case or empty level) never is."""
        try:
            mqtt_topic_level(commune)
        except ValueError:
            return False
        return self.every or commune in self.communes

    def filters(self, share_group: str | None = None) -> list[str]:
        """What to subscribe to: every event and snapshot of each commune (or of ``+``), each
        behind ``$share/<group>/`` when the receiver shares its subscription."""
        levels = self.communes or (EVERY,)
        plain = [commune_event_filter(c) for c in levels] + [
            commune_snapshot_filter(c) for c in levels
        ]
        return [f"$share/{share_group}/{f}" for f in plain] if share_group else plain

    def default_client_id(self) -> str:
        """``tuquan-receiver-<commune>``, ``tuquan-receiver-+``, ``tuquan-receiver-a+b`` (a
        long list: its first commune, its length and a digest, stable for the same list)."""
        label = self.label
        if len(label) > _MAX_CLIENT_ID_LIST:
            digest = hashlib.sha256(label.encode()).hexdigest()[:10]
            label = f"{self.communes[0]}+{len(self.communes) - 1}-{digest}"
        return f"tuquan-receiver-{label}"

    @property
    def will_topic(self) -> str:
        """Where the last will says ``offline``: the commune's status, or the province's."""
        single = self.single
        return receiver_status_topic(single) if single else province_receiver_status_topic()

    def status_topics(self) -> list[str]:
        """Where to say ``online`` each time the subscription is in place (for every commune,
        a commune's own topic comes later, with its first receipt: ``announce``)."""
        single = self.single
        if single:
            return [receiver_status_topic(single)]
        return [receiver_status_topic(c) for c in self.communes] + [
            province_receiver_status_topic()
        ]


__all__ = ["EVERY", "CommuneScope", "ScopeError", "commune_name"]
