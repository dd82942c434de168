"""What the hub shows and reports of its link to the broker: the status LED and the ``uplink``
trouble event.

The uplink hands each change of its link (``gateway.uplink.LinkStatus``) to ``changed``, from
paho's thread or its watch thread; one thread of this module's own ("uplink-report") does the
rest, so neither waits for an LED or the outbox:

* the status LED is on, steady, while the link is online; it blinks slowly while offline and
  fast while the link is silent (TCP open, nothing passing);
* a loss of the link that lasts longer than ``trouble_after_s`` is reported as an ``uplink``
  event ``E``, timestamped when the link was lost (it waits in the outbox and goes out once the
  link is back), and its end as an ``R`` with ``{"down_s", "cause"}``. A shorter blip reports
  nothing: it must not become a police alert.

The LED is an output of its own, never one the alarm rules drive (the config checks that), so
the siren's rules and this thread never touch the same output.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from core.events import NEW, RESTORE, Event, utc_iso
from gateway.alarm import Switch
from gateway.link_state import LINK_OFFLINE, LINK_ONLINE, LINK_SILENT, LinkStatus, Outage

log = logging.getLogger(__name__)

# Half a blink period: slow while offline, fast while silent (an installer tells them apart).
BLINK_HALF_S = {LINK_OFFLINE: 0.5, LINK_SILENT: 0.15}


class LinkReport:
    """The status LED and the ``uplink`` trouble event, driven by the uplink's link changes."""

    def __init__(
        self,
        emit: Callable[[Event], object],
        *,
        trouble_after_s: float,
        led: Switch | None = None,
        led_name: str | None = None,
    ) -> None:
        self.emit = emit
        self.trouble_after_s = trouble_after_s
        self.led = led
        self.led_name = led_name if led is not None else None
        self._queue: queue.SimpleQueue[LinkStatus | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="uplink-report", daemon=True)
        self._state = LINK_OFFLINE  # until the first connect
        self._outage: Outage | None = None
        self._reported: Outage | None = None  # the outage whose E has been emitted
        self._lit = False

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """End the thread and leave the LED off."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(5.0)
        self._set_led(False)

    def changed(self, status: LinkStatus) -> None:
        """The link changed (paho's thread or the uplink's watch thread): only queues."""
        self._queue.put(status)

    def health(self) -> dict[str, Any]:
        return {"status_led": self.led_name, "trouble_reported": self._reported is not None}

    # -- the report thread ----------------------------------------------------------------

    def _run(self) -> None:
        next_blink = time.monotonic()
        while True:
            now = time.monotonic()
            wait = 1.0
            if self._state != LINK_ONLINE and self.led is not None:
                wait = min(wait, max(0.0, next_blink - now))
            if self._outage is not None and self._reported is None:
                due = self._outage.started_mono + self.trouble_after_s
                wait = min(wait, max(0.0, due - now))
            status: LinkStatus | None = None
            try:
                status = self._queue.get(timeout=wait)
                if status is None:
                    return
            except queue.Empty:
                pass  # a tick: blink, or report an outage that has lasted
            try:
                if status is not None:
                    self._apply(status)
                now = time.monotonic()
                self._report_if_due(now)
                if self._state == LINK_ONLINE:
                    self._set_led(True)
                elif now >= next_blink:
                    self._set_led(not self._lit)
                    next_blink = now + BLINK_HALF_S.get(self._state, 0.5)
            except Exception:
                log.exception("uplink report error")

    def _apply(self, status: LinkStatus) -> None:
        self._state = status.state
        if status.outage is not None and status.outage is not self._outage:
            self._outage = status.outage
        if status.state != LINK_ONLINE:
            return
        self._outage = None
        ended, reported = status.ended, self._reported
        if ended is not None and reported is not None and ended is reported:
            self._reported = None
            down_s = status.down_s if status.down_s is not None else 0.0
            log.info("uplink back after %.1f s (%s): reporting the restore", down_s, ended.cause)
            self.emit(
                Event(
                    kind="uplink",
                    zone="hub",
                    source="uplink",
                    qualifier=RESTORE,
                    data={"down_s": down_s, "cause": ended.cause},
                )
            )

    def _report_if_due(self, now: float) -> None:
        outage = self._outage
        if outage is None or self._reported is not None:
            return
        if now - outage.started_mono < self.trouble_after_s:
            return
        self._reported = outage
        log.warning(
            "uplink down for more than %.0f s (%s): reporting trouble, sent once the link is back",
            self.trouble_after_s,
            outage.cause,
        )
        self.emit(
            Event(
                kind="uplink",
                zone="hub",
                source="uplink",
                qualifier=NEW,
                ts=utc_iso(outage.started),
                data={"cause": outage.cause},
            )
        )

    def _set_led(self, on: bool) -> None:
        if self.led is None or on == self._lit:
            return
        try:
            if on:
                self.led.on()
            else:
                self.led.off()
            self._lit = on
        except Exception:  # a closed or failed pin: the link report goes on without it
            log.exception("status LED %s could not be set", self.led_name)
            self.led = None
