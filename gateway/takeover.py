"""Another client taking over the hub's MQTT session: said (MQTT 5 DISCONNECT reason 142) or,
with Mosquitto 2.0.11 (Debian 12, Raspberry Pi OS), inferred from its pattern.

Mosquitto 2.0 closes the old connection without a word on a takeover, as it does when it stops,
so a takeover is inferred when the broker ends a connection that had just been made, right after
it had ended the one before. An episode (one or more takeovers) is logged once and ends when a
connection has lasted TAKEOVER_QUIET_S."""

from __future__ import annotations

from typing import Any

SESSION_TAKEN_OVER = 142  # MQTT 5 DISCONNECT reason: another client connected with our id
TAKEOVER_BACKOFF_S = 30  # at least this long before reconnecting after a takeover
TAKEOVER_QUIET_S = 60.0  # a connection that lasts this long ends a takeover episode
TAKEOVER_SUSPECT_S = 10.0  # a broker's close this soon after a connect may be a takeover
_BROKER_CLOSED = 128  # paho's reason when the socket ended without a DISCONNECT packet


class TakeoverWatch:
    """Decides, connection end by connection end, whether the session was taken over. Not
    thread-safe: the uplink calls it under its lock."""

    def __init__(self) -> None:
        self.episode = False
        self._prev_close: float | None = None  # monotonic: when the broker last ended one

    def closed(
        self, flags: Any, reason_code: Any, now: float, connected_since: float
    ) -> tuple[bool, bool]:
        """An established connection ended: (taken over, inferred rather than said)."""
        if getattr(reason_code, "value", None) == SESSION_TAKEN_OVER:
            self._prev_close = now
            return True, False
        closed = (
            not flags.is_disconnect_packet_from_server
            and getattr(reason_code, "value", 0) == _BROKER_CLOSED
        )
        previous, self._prev_close = self._prev_close, (now if closed else None)
        short = now - connected_since < TAKEOVER_SUSPECT_S
        if closed and short and previous is not None and now - previous < TAKEOVER_QUIET_S:
            return True, True
        return False, False

    def ended_by_us(self) -> None:
        """The hub dropped the connection itself (a silent link): not the broker's close."""
        self._prev_close = None

    def begins(self) -> bool:
        """A takeover happened: True if it starts an episode (the one to log)."""
        first = not self.episode
        self.episode = True
        return first

    def over(self, now: float, connected_since: float) -> bool:
        """True once, when the connection of an episode has lasted TAKEOVER_QUIET_S."""
        if self.episode and now - connected_since >= TAKEOVER_QUIET_S:
            self.episode = False
            return True
        return False


def takeover_message(client_id: str, inferred: bool) -> str:
    """The one log line of an episode: what is likely wrong and what the hub does about it."""
    how = (
        "(The broker closed the connection twice in a row just after it was made, giving no"
        " reason, as Mosquitto 2.0 does on a takeover.) "
        if inferred
        else ""
    )
    return (
        f"another client is using this hub's client id {client_id}: a second hub with the same"
        f" id or a copied config? {how}Waiting at least {TAKEOVER_BACKOFF_S} s before each"
        " reconnect while it goes on"
    )
