"""DC-09 forward rate: stored events to pysiaalarm's receiver on loopback, one at a time.

Forwarder: N alarms stored in a receiver store on a real disk (after the forwarder's position
was set), then ``Dc09Forwarder`` started; the time from its start to its N-th ACK gives the
rate. Every message waits for its ACK before the next goes (DC-09 delivers in order), and each
ACK is committed to the queue (WAL, synchronous=FULL) before the next message. Bare baseline,
in the same run against the same receiver: the same N messages framed in advance, written to
one socket, each reply read before the next (no store, no queue). Both unencrypted and AES-128.
"""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path
from typing import Any

from pysiaalarm import SIAAccount, SIAClient, SIAEvent

from bench import common
from commune.db import Db
from commune.dc09.config import Dc09Config
from commune.dc09.forwarder import Dc09Forwarder
from commune.dc09.messages import ContactId, Route, adm_cid
from commune.dc09.queue import Dc09Queue
from commune.store import EventStore, ReceivedEvent
from core.events import Event, utc_now_iso
from testkit.broker import free_port
from testkit.waiting import wait_until

HUB, ACCOUNT, KEY = "cho-an-dong", "1234", "A1B2C3D4E5F60718"


def bare(port: int, n: int, key: bytes | None) -> float:
    """Messages a second, framed in advance and sent over one socket, each ACK awaited."""
    wires = [
        adm_cid(i % 9999 + 1, Route("1", "2"), ACCOUNT, ContactId(1, 120, 1, 1), key).wire
        for i in range(n)
    ]
    with socket.create_connection(("127.0.0.1", port)) as sock:
        t0 = time.perf_counter()
        for wire in wires:
            sock.sendall(wire)
            reply = b""
            while not reply.endswith(b"\r"):
                reply += sock.recv(1024)
        return n / (time.perf_counter() - t0)


def forwarder_rate(data: Path, port: int, n: int, key: str | None) -> float:
    path = data / "receiver.sqlite3"
    config = Dc09Config.model_validate(
        {
            "host": "127.0.0.1",
            "port": port,
            "receiver_number": "1",
            "line_prefix": "2",
            "accounts": {HUB: ACCOUNT},
            "link_test_s": 0,
            "retry_max_s": 1,
            **({"key_env": "K"} if key else {}),
        },
        context=_context(key),
    )
    EventStore(path).close()
    Dc09Queue(Db(path), config).follow()  # the position, before the events
    with EventStore(path) as store:
        items = []
        for _ in range(n):
            event = Event(kind="panic", zone="panic-1", source="bench")
            items.append(
                ReceivedEvent.from_event(
                    event, hub=HUB, commune="p", payload="{}", received_at=utc_now_iso()
                )
            )
        store.store_batch(items)
    forwarder = Dc09Forwarder(path, config)
    t0 = time.perf_counter()
    forwarder.start()
    try:
        wait_until(lambda: forwarder.sender.counters["delivered"] >= n, 600, step=0.001)
        elapsed = time.perf_counter() - t0
        assert forwarder.stats()["naks"] == 0
    finally:
        forwarder.stop()
    return n / elapsed


def _context(key: str | None) -> Any:
    from settings import LoadContext

    return LoadContext(base_dir=Path.cwd(), env={"K": key} if key else {})


def main(argv: list[str] | None = None) -> None:
    p = common.parser(__doc__.splitlines()[0])
    args = p.parse_args(argv)
    n = 500 if args.quick else 5_000
    port = free_port()
    received = [0]

    def arrived(event: SIAEvent) -> None:
        received[0] += 1

    rows, results = [], {}
    for label, key in (("unencrypted", None), ("AES-128", KEY)):
        client = SIAClient("127.0.0.1", port, [SIAAccount(ACCOUNT, key)], arrived)
        client.start()
        data = common.disk_dir(args.data_root, "tuquan-dc09-")
        try:
            time.sleep(0.2)
            base = bare(port, n, key.encode() if key else None)
            ours = forwarder_rate(data, port, n, key)
        finally:
            client.stop()
            shutil.rmtree(data, ignore_errors=True)
        rows.append([label, base, ours, common.ratio(ours, base)])
        results[label] = {"bare_per_s": round(base), "forwarder_per_s": round(ours)}
    common.table(
        f"Messages ACKed per second, {n:,} alarms, pysiaalarm 3.2.2 on loopback",
        ["case", "bare socket", "Dc09Forwarder", "forwarder / bare"],
        rows,
    )
    common.report("dc09_forward", args, {"messages": n, **results})


if __name__ == "__main__":
    main()
