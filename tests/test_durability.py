"""Nothing the hub accepted is lost: kill -9 of the hub, receipts and re-sends, end to end."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest

from commune.receiver import Receiver
from commune.store import EventStore
from gateway.outbox import DELIVERED, Outbox
from hw_sim.control import request
from hw_sim.simulator import default_config_path
from testkit.hubs import COMMUNE, EVENTS, outbox_counts, sim_hub
from testkit.mqtt import Subscriber
from testkit.waiting import wait_until


def write_sim_config(path: Path, **uplink: object) -> Path:
    """The default simulated hub with other [uplink] settings, as a TOML file."""
    text = default_config_path().read_text()
    data = tomllib.loads(text)
    data["uplink"].update(uplink)
    lines = [
        line
        for line in text.splitlines()
        if not any(line.startswith(f"{k} =") for k in data["uplink"])
    ]
    body = "\n".join(lines).replace(
        "[uplink]",
        "[uplink]\n"
        + "\n".join(f"{k} = {json.dumps(v)}" for k, v in uplink.items())
        + "\n"
        + "\n".join(f"{k} = {json.dumps(v)}" for k, v in data["uplink"].items() if k not in uplink),
    )
    path.write_text(body + "\n")
    return path


class HubProcess:
    """``tuquan run --sim`` in a child process, as an installer would run it."""

    def __init__(self, config: Path, data_dir: Path, broker: str, log: Path) -> None:
        self.args = [
            sys.executable,
            "-m",
            "tuquan",
            "run",
            "--sim",
            "--config",
            str(config),
            "--broker",
            broker,
            "--data-dir",
            str(data_dir),
        ]
        self.data_dir = data_dir
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args, stdout=out, stderr=out, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, f"hub exited: {self.log.read_text()[-2000:]}"
            try:
                if request(self.data_dir, {"cmd": "status"}, timeout=5).get("ok"):
                    return
            except (OSError, ValueError):
                pass
            assert time.monotonic() < deadline, "simulated hub did not answer in 30 s"
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)


def test_hub_killed_20_times_while_500_events_flow_loses_nothing(mosquitto, tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("TUQUAN_SOAK_SEED", "20261128")))
    store_path = tmp_path / "receiver.sqlite3"
    receiver = Receiver(mosquitto.host, mosquitto.port, COMMUNE, store_path)
    receiver.start()
    assert receiver.wait_subscribed(10)
    config = write_sim_config(tmp_path / "hub.toml", receipts=True, receipt_timeout_s=2.0)
    hub = HubProcess(config, tmp_path / "hub", mosquitto.address, tmp_path / "hub.log")
    accepted: list[tuple[str, int]] = []  # (id, seq) in the order the hub accepted them
    target, kills = 500, 20
    try:
        for cycle in range(kills):
            hub.start()
            stop = threading.Event()

            def produce(stop: threading.Event = stop) -> None:
                while not stop.is_set() and len(accepted) < target + 50:
                    kind = rng.choice(["telemetry", "telemetry", "tamper", "panic"])
                    try:
                        answer = request(
                            hub.data_dir,
                            {"cmd": "emit", "kind": kind, "count": rng.randint(1, 5)},
                            timeout=5,
                        )
                    except (OSError, ValueError):
                        return  # killed mid-request: those events may or may not be accepted
                    accepted.extend((e["id"], e["seq"]) for e in answer["events"])

            producer = threading.Thread(target=produce)
            producer.start()
            # Spread the flow over the cycles; kill at a random moment inside each.
            want = target * (cycle + 1) // kills
            wait_until(lambda want=want: len(accepted) >= want, timeout=30, what="events flow")
            time.sleep(rng.uniform(0.0, 0.2))
            hub.kill()
            stop.set()
            producer.join(10)
        assert len(accepted) >= target
        hub.start()  # the last start drains what the kills left behind
        ids = {i for i, _ in accepted}

        def all_stored() -> bool:
            with EventStore(store_path) as store:
                return ids <= set(store.ids())

        wait_until(all_stored, timeout=90, what="every accepted event at the receiver")
        assert hub.terminate() == 0
    finally:
        if hub.proc and hub.proc.poll() is None:
            hub.kill()
        receiver.stop()
    # seq is per hub and monotonic across all 21 runs, in the order events were accepted.
    seqs = [s for _, s in accepted]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    with EventStore(store_path) as store:
        stored = {i: store.get(i) for i in ids}
    # The receiver stored each once; a re-sent copy carried the same id and the same seq.
    assert all(stored[i] is not None and stored[i]["seq"] == s for i, s in accepted)
    outbox = Outbox(tmp_path / "hub" / "outbox.sqlite3", "sim-hub")
    assert all(outbox.state_of(i) == DELIVERED for i in ids)


def test_a_sent_event_without_receipt_is_sent_again_with_the_same_id(
    mosquitto, tmp_path: Path
) -> None:
    with (
        Subscriber(mosquitto, EVENTS) as sub,
        sim_hub(mosquitto, tmp_path, uplink={"receipts": True, "receipt_timeout_s": 0.5}) as hub,
    ):
        hub.board.press("panic-1")
        msgs = sub.wait_for(2, timeout=10)  # no receiver: PUBACK alone is not enough
        first, again = (m.json() for m in msgs[:2])
        assert first == again
        # A receipt ends it: delivered, and no more copies.
        sub.publish(f"tuquan/v1/{COMMUNE}/sim-hub/receipt", json.dumps({"ids": [first["id"]]}))
        wait_until(lambda: outbox_counts(hub).get("delivered") == 1, what="delivered")
        n = len(sub.messages)
        time.sleep(1.5)
        assert len(sub.messages) <= n + 1  # at most one copy already on its way


def test_with_a_receiver_events_are_delivered_and_leave_the_pending_states(
    mosquitto, tmp_path: Path
) -> None:
    new: list[dict[str, object]] = []
    receiver = Receiver(
        mosquitto.host, mosquitto.port, COMMUNE, tmp_path / "r.sqlite3", on_new_event=new.append
    )
    receiver.start()
    assert receiver.wait_subscribed(10)
    try:
        with sim_hub(mosquitto, tmp_path / "hub", uplink={"receipts": True}) as hub:
            hub.board.press("tamper-1")
            hub.board.press("panic-1")
            wait_until(lambda: outbox_counts(hub).get("delivered") == 2, what="2 delivered")
            assert outbox_counts(hub)["pending"] == 0 and outbox_counts(hub)["sent"] == 0
    finally:
        receiver.stop()
    assert sorted(e["kind"] for e in new) == ["panic", "tamper"]


@pytest.mark.slow
def test_soak_hub_killed_200_times(mosquitto, tmp_path: Path) -> None:
    """The same as the 20-kill test, longer (run with -m slow)."""
    os.environ.setdefault("TUQUAN_SOAK_SEED", str(random.randrange(1 << 30)))
    test_hub_killed_20_times_while_500_events_flow_loses_nothing(mosquitto, tmp_path)
