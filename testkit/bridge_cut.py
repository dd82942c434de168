"""A province under load with one commune's bridge cut, and what the bridge and the hubs did.

Real simulated hubs (``testkit.hubs``) on bridged commune brokers (``testkit.bridged``, the
bridge written by ``tuquan bridge-config``), a receiver of every commune (``commune = "+"``) on
the province broker. Each hub commits telemetry events steadily; the bridge of the first
commune is cut (its link made silent, or the province broker stopped) for a while and healed.
A tap on each side counts every copy of every event: what the hubs published on their commune
broker (re-sends included) and what reached the province.

The figures (``CutReport``) for the cut commune, by event id and copy:

- ``events``: events its hubs committed during the cut (from the cut until the bridge was
  connected again);
- ``copies``: copies of events the hubs published during the cut (a hub re-sends what has no
  receipt after its receipt timeout: during a cut nothing is receipted);
- ``dropped``: copies the commune broker dropped for want of room in the bridge's queue (its
  ``$SYS/broker/publish/messages/dropped``);
- ``held``: copies published during the cut that the bridge delivered after it;
- ``events_held``: events of which at least one copy published during the cut reached the
  province; ``events_resent``: the rest, which reached it only by a copy the hub sent after
  the cut (every copy from the cut dropped, or lost with the commune broker);
- ``stored``, ``duplicates``: at the receiver; ``lost``: events committed by a hub and not in
  the store at the end (must be 0).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from commune.locations import DB_FILENAME
from commune.receiver import Receiver
from commune.store import EventStore
from hw_sim.simulator import SimulatedHub
from testkit.bridged import TAP_USER, BridgedBrokers
from testkit.hubs import outbox_counts, sim_config, sim_hub
from testkit.mqtt import HasAddress
from testkit.waiting import wait_until


@dataclass(frozen=True)
class CutReport:
    how: str
    cut_s: float  # from the cut until the bridge was connected again
    events: int
    copies: int
    dropped: int
    held: int
    events_held: int
    events_resent: int
    resent_by_hubs: int  # the hubs' own count of re-sent events, the whole run
    committed: int  # events the hubs committed, the whole run (every commune)
    stored: int
    duplicates: int
    lost: int

    def text(self) -> str:
        return (
            f"{self.how}: bridge down {self.cut_s:.1f} s; during it the cut commune's hubs "
            f"committed {self.events} events and published {self.copies} copies; the bridge "
            f"held {self.held} and dropped {self.dropped}; {self.events_held} events came "
            f"through a held copy, {self.events_resent} only through a hub's re-send after it; "
            f"the hubs re-sent {self.resent_by_hubs} in all; {self.committed} committed, "
            f"{self.stored} stored once each ({self.duplicates} duplicates dropped), "
            f"{self.lost} lost"
        )

    def json(self) -> str:
        return json.dumps(asdict(self))


class Tap:
    """Every event copy on ``topic_filter`` with its arrival time, over a persistent session
    (so a broker restart does not lose what it kept for the tap)."""

    def __init__(self, broker: HasAddress, topic_filter: str, login: tuple[str, str] | None):
        self.filter = topic_filter
        self.copies: list[tuple[float, str]] = []  # (monotonic time, event id)
        self.dropped_counter: list[int] = []
        self._lock = threading.Lock()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"tap-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        if login is not None:
            client.username_pw_set(*login)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.reconnect_delay_set(0.2, 1)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        self.subscribed = threading.Event()
        client.connect(broker.host, broker.port, clean_start=False, properties=props)
        client.loop_start()
        self.client = client
        wait_until(self.subscribed.is_set, 30, f"tap on {topic_filter}")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            client.subscribe([(self.filter, 1), ("$SYS/broker/publish/messages/dropped", 0)])
            self.subscribed.set()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        if msg.topic.startswith("$SYS/"):
            self.dropped_counter.append(int(msg.payload))
            return
        try:
            event_id = json.loads(msg.payload)["id"]
        except (ValueError, KeyError, TypeError):
            return
        with self._lock:
            self.copies.append((now, event_id))

    def between(self, start: float, end: float) -> Counter[str]:
        with self._lock:
            return Counter(i for t, i in self.copies if start <= t < end)

    def after(self, start: float) -> Counter[str]:
        return self.between(start, float("inf"))

    def dropped(self) -> int:
        """The broker's count of messages it dropped (for a full queue), as last published."""
        return self.dropped_counter[-1] if self.dropped_counter else 0

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Load:
    """Each hub commits ``per_tick`` telemetry events every ``tick_s``, until stopped; the ids
    committed by each hub, with the time each batch was committed."""

    def __init__(self, hubs: Sequence[SimulatedHub], per_tick: int, tick_s: float) -> None:
        self.hubs, self.per_tick, self.tick_s = hubs, per_tick, tick_s
        self.committed: list[tuple[float, str, str]] = []  # (time, commune, event id)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(hub,), daemon=True) for hub in hubs
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _run(self, hub: SimulatedHub) -> None:
        commune = hub.cfg.hub.commune
        while not self._stop.is_set():
            answer = hub.handle({"cmd": "emit", "kind": "telemetry", "count": self.per_tick})
            now = time.monotonic()
            if answer.get("ok"):
                with self._lock:
                    self.committed += [(now, commune, e["id"]) for e in answer["events"]]
            self._stop.wait(self.tick_s)

    def ids(
        self, commune: str | None = None, start: float = 0, end: float = float("inf")
    ) -> set[str]:
        with self._lock:
            return {
                i
                for t, c, i in self.committed
                if (commune is None or c == commune) and start <= t < end
            }


@contextmanager
def province(
    root: Path,
    communes: Sequence[str] = ("xa-a", "xa-b"),
    *,
    hubs_per_commune: int = 2,
    receipt_timeout_s: float = 10.0,
    queue_limit: int | None = None,
    sizing: Sequence[str] = (),
) -> Iterator[tuple[BridgedBrokers, Receiver, list[SimulatedHub]]]:
    """The bridged brokers, a subscribed receiver of every commune and the started hubs."""
    after = f"max_queued_messages {queue_limit}" if queue_limit else ""
    with ExitStack() as stack:
        net = stack.enter_context(
            BridgedBrokers(
                root,
                communes,
                hubs=hubs_per_commune,
                sizing=(*sizing, "--receipt-timeout-s", str(receipt_timeout_s)),
                after_bridge=after,
            )
        )
        wait_until(lambda: all(net.bridge_up(c) for c in communes), 60, "bridges up")
        user, password = net.receiver_login
        receiver = Receiver(
            net.province.host,
            net.province.port,
            "+",
            root / "receiver" / DB_FILENAME,
            username=user,
            password=password,
            client_id="province-rx",
        )
        (root / "receiver").mkdir(exist_ok=True)
        receiver.start()
        stack.callback(receiver.stop)
        assert receiver.wait_subscribed(30), "the province receiver did not subscribe"
        hubs = []
        for commune in communes:
            for n in range(hubs_per_commune):
                cfg = sim_config(
                    camera=False,
                    sensor_bus=False,
                    hub={"id": f"hub-{n + 1}", "commune": commune},
                    uplink={"receipt_timeout_s": receipt_timeout_s},
                )
                hubs.append(
                    stack.enter_context(
                        sim_hub(net.communes[commune], root / commune / f"hub-{n + 1}", cfg)
                    )
                )
        yield net, receiver, hubs


def run_cut(
    net: BridgedBrokers,
    receiver: Receiver,
    hubs: Sequence[SimulatedHub],
    *,
    how: str = "link",
    down_s: float = 5.0,
    per_tick: int = 2,
    tick_s: float = 0.1,
    drain_timeout_s: float = 120.0,
) -> CutReport:
    """Load, cut, heal, drain. ``how``: "link" silences the first commune's bridge for
    ``down_s`` once the province noticed; "link+crash" also kills the commune broker (SIGKILL)
    in the middle and starts it again; "province" stops the province broker for ``down_s``."""
    cut_commune = net.names[0]
    with ExitStack() as stack:
        below = Tap(net.communes[cut_commune], f"tuquan/v1/{cut_commune}/+/event/+", None)
        stack.callback(below.close)
        above = Tap(
            net.province,
            f"tuquan/v1/{cut_commune}/+/event/+",
            (TAP_USER, net.passwords[TAP_USER]),
        )
        stack.callback(above.close)
        load = Load(hubs, per_tick, tick_s)
        load.start()
        try:
            wait_until(lambda: len(above.copies) >= 50, 60, "events reaching the province")
            dropped_before = below.dropped()
            reconnects = net.province_connects(cut_commune)
            start = time.monotonic()
            if how in ("link", "link+crash"):
                net.cut(cut_commune)
                wait_until(lambda: net.bridge_up(cut_commune) is False, 60, "the cut noticed")
                time.sleep(down_s)
                if how == "link+crash":  # the commune broker dies with the bridge's queue
                    net.communes[cut_commune].kill()
                    net.communes[cut_commune].start()
                    time.sleep(down_s)
                net.heal(cut_commune)
            elif how == "province":
                net.province.stop()
                time.sleep(down_s)
                net.province.start()
            else:
                raise ValueError(f"unknown cut {how!r}")
            wait_until(
                lambda: net.province_connects(cut_commune) > reconnects,
                120,
                "the bridge connected again",
            )
            end = time.monotonic()
            time.sleep(2 * tick_s + 1)
        finally:
            load.stop()
        wait_until(
            lambda: all(sum(outbox_counts(h).get(k, 0) for k in ("pending", "sent")) == 0
                        for h in hubs),
            drain_timeout_s,
            "every hub's events receipted",
        )  # fmt: skip
        time.sleep(1)  # the taps' last copies
        during = below.between(start, end)
        later = below.after(end)
        reached = above.after(0)
        events = load.ids(cut_commune, start, end)
        held_ids = {i for i in during if reached[i] > later[i]}
        resent_ids = {i for i in during if reached[i] <= later[i]}
        resent = sum(h.hub.health()["resent"] for h in hubs)
    committed = load.ids()
    with EventStore(receiver.db_path) as store:
        stored = set(store.ids())
    stats = receiver.stats
    return CutReport(
        how=how,
        cut_s=end - start,
        events=len(events),
        copies=sum(during.values()),
        dropped=below.dropped() - dropped_before,
        held=sum(min(during[i], max(0, reached[i] - later[i])) for i in during),
        events_held=len(held_ids),
        events_resent=len(resent_ids),
        resent_by_hubs=resent,
        committed=len(committed),
        stored=len(committed & stored),
        duplicates=stats.duplicates,
        lost=len(committed - stored),
    )
