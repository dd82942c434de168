"""Signed commands on an enrolled hub (real Mosquitto, the simulated hub, its real alarm rules
and outputs): forged, tampered, replayed, expired, misaddressed and rolled-back commands are
refused and counted and never touch the siren; the genuine one runs once."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from test_storage_faults import fill, small_disk  # noqa: F401 - the fixture

from commune.commands import (
    CounterError,
    CounterStore,
    command_payload,
    publish_command,
    sign_command,
)
from commune.trust import load_commune_key
from core.signing import PublicKey, SigningKey, verify
from core.topics import HubTopics
from gateway.command_check import CHECKS_SYNCED, CHECKS_UNSYNCED, SignedCommandCheck
from gateway.replay import REPLAY_FILE, WINDOW, ReplayWindow, salvage_highest
from gateway.trust import HUB_KEY_FILE, trust_commune
from hw_sim.simulator import SimulatedHub
from testkit.hubs import COMMUNE, HUB, press_and_release, sim_hub
from testkit.mqtt import Subscriber
from testkit.waiting import wait_until
from tuquan.cli import main

TOPICS = HubTopics(COMMUNE, HUB)
SILENCE = f"{TOPICS.base}/cmd/silence"


class FixedClock:
    """The hub's clock status, set by the test (the kernel's is whatever the machine's is)."""

    def __init__(self, synced: bool) -> None:
        self._synced = synced

    def synced(self) -> bool:
        return self._synced


class Commune:
    """The commune's side: its key and counter in a receiver data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.key = load_commune_key(data_dir)
        self.counter = CounterStore(data_dir / "command-counter")

    def command(self, name: str = "silence", **changes: Any) -> dict[str, Any]:
        options = {"hub": HUB, "args": {}, "operator": "officer-7", "key": self.key, **changes}
        return sign_command(
            options["key"],
            COMMUNE,
            options["hub"],
            name,
            options["args"],
            options["operator"],
            int(options.get("ttl_s", 120)),
            counter_store=self.counter,
            now=options.get("now"),
        )


def enrolled_hub(broker: Any, hub_dir: Path, commune: Commune, synced: bool) -> Any:
    trust_commune(hub_dir, commune.key.public)
    return sim_hub(broker, hub_dir, camera=False, sensor_bus=False, uplink={"receipts": False})


def start(hub: SimulatedHub, synced: bool) -> PublicKey:
    hub.hub.clock = FixedClock(synced)  # type: ignore[assignment]
    wait_until(lambda: hub.hub.uplink.connected, what="hub online")
    return SigningKey.load(hub.hub.data_dir / HUB_KEY_FILE).public


def send(sub: Subscriber, payload: bytes | dict[str, Any], command_id: str) -> dict[str, Any]:
    """Publish a command (with its MQTT expiry) and return the hub's result for it."""
    seen = sub.count
    if isinstance(payload, dict):
        publish_command(sub.client, payload).wait_for_publish(10)
    else:
        sub.publish(SILENCE, payload)
    messages = sub.wait_until(
        lambda ms: any(m.json().get("command_id") == command_id for m in ms[seen:])
    )
    return next(m.json() for m in messages[seen:] if m.json().get("command_id") == command_id)


def assert_refused(result: dict[str, Any], hub_key: PublicKey, why: str) -> None:
    assert result["ok"] is False and why in result["error"], result
    assert "silenced" not in result
    assert verify("cmd_result", result, hub_key)


def test_only_the_genuine_command_silences_and_only_once(mosquitto, tmp_path: Path) -> None:
    commune = Commune(tmp_path / "receiver")
    hub_dir = tmp_path / "hub"
    with (
        Subscriber(mosquitto, TOPICS.cmd_result) as sub,
        Subscriber(mosquitto, f"{TOPICS.base}/event/silenced") as silenced_events,
        enrolled_hub(mosquitto, hub_dir, commune, synced=True) as hub,
    ):
        hub_key = start(hub, synced=True)
        press_and_release(hub)
        assert hub.board.outputs()["siren"] is True

        forged = commune.command(key=SigningKey.generate())
        assert_refused(send(sub, forged, forged["id"]), hub_key, "bad signature")
        genuine = commune.command()
        flipped = command_payload(genuine).replace(b'"officer-7"', b'"officer-8"')
        assert_refused(send(sub, flipped, genuine["id"]), hub_key, "bad signature")
        expired = commune.command(now=time.time() - 1000)
        assert_refused(send(sub, expired, expired["id"]), hub_key, "expired")
        elsewhere = commune.command(hub="another-hub")
        sent_here = command_payload(elsewhere)  # on this hub's topic, signed for another
        assert_refused(send(sub, sent_here, elsewhere["id"]), hub_key, "another hub")
        unsigned = {k: v for k, v in commune.command().items() if k not in ("kid", "sig")}
        assert_refused(send(sub, unsigned, unsigned["id"]), hub_key, "unsigned")
        assert hub.hub.refused_commands == 5
        assert hub.board.outputs()["siren"] is True

        ran = send(sub, genuine, genuine["id"])
        assert ran["ok"] is True and ran["silenced"] == ["siren"]
        assert ran["operator"] == "officer-7" and ran["checks"] == CHECKS_SYNCED
        assert ran["clock_synced"] is True and verify("cmd_result", ran, hub_key)
        assert hub.board.outputs()["siren"] is False

        press_and_release(hub)  # sounding again: a replay must not silence it
        assert hub.board.outputs()["siren"] is True
        for _ in range(100):
            publish_command(sub.client, genuine)
        wait_until(lambda: hub.hub.refused_commands == 105, what="every replay refused")

        def answers(ms: list[Any]) -> list[dict[str, Any]]:
            return [m.json() for m in ms if m.json().get("command_id") == genuine["id"]]

        # Its id answered: the flipped copy, the run, and the 100 replays.
        replies = answers(sub.wait_until(lambda ms: len(answers(ms)) == 102))
        assert [r["ok"] for r in replies].count(True) == 1
        assert sum("already used" in r.get("error", "") for r in replies) == 100
        assert hub.board.outputs()["siren"] is True
        assert hub.hub.health()["refused_commands"] == 105
        hub.hub.dispatcher.call(lambda o: None).result(5)
        assert [e.json()["data"] for e in silenced_events.messages] == [{"by": "officer-7"}]

    # After a restart the counters are remembered: a counter used before, or rolled back
    # below the window, is refused.
    with (
        Subscriber(mosquitto, TOPICS.cmd_result) as sub,
        enrolled_hub(mosquitto, hub_dir, commune, synced=True) as hub,
    ):
        hub_key = start(hub, synced=True)
        press_and_release(hub)
        commune.counter.path.write_text(f"{genuine['counter'] - 1}\n")
        reused = commune.command()
        assert reused["counter"] == genuine["counter"] and reused["id"] != genuine["id"]
        assert_refused(send(sub, reused, reused["id"]), hub_key, "already used")
        commune.counter.path.write_text("100\n")
        ahead = commune.command(name="ping")
        assert send(sub, ahead, ahead["id"])["ok"] is True
        commune.counter.path.write_text("10\n")
        old = commune.command()
        assert_refused(send(sub, old, old["id"]), hub_key, "too old")
        assert hub.hub.refused_commands == 2
        assert hub.board.outputs()["siren"] is True


def test_with_the_clock_unsynchronised_the_broker_expiry_and_counter_decide(
    mosquitto, tmp_path: Path
) -> None:
    commune = Commune(tmp_path / "receiver")
    with (
        Subscriber(mosquitto, TOPICS.cmd_result) as sub,
        enrolled_hub(mosquitto, tmp_path / "hub", commune, synced=False) as hub,
    ):
        hub_key = start(hub, synced=False)
        press_and_release(hub)
        # Expired by its timestamps (the hub's clock cannot judge them), fresh by its counter.
        late = commune.command(now=time.time() - 1000)
        unbounded = send(sub, command_payload(late), late["id"])  # no MQTT message expiry
        assert_refused(unbounded, hub_key, "message expiry")
        assert unbounded["checks"] == ["signature", "hub"] and unbounded["clock_synced"] is False
        assert hub.board.outputs()["siren"] is True
        ran = send(sub, late, late["id"])  # the same, with the broker's expiry
        assert ran["ok"] is True and ran["silenced"] == ["siren"]
        assert ran["checks"] == CHECKS_UNSYNCED and ran["clock_synced"] is False
        assert verify("cmd_result", ran, hub_key)
        replayed = send(sub, late, late["id"])
        assert_refused(replayed, hub_key, "already used")
        assert hub.hub.refused_commands == 2


def test_tuquan_command_waits_for_the_hubs_signed_result(
    mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver_dir = tmp_path / "receiver"
    commune = Commune(receiver_dir)
    with enrolled_hub(mosquitto, tmp_path / "hub", commune, synced=True) as hub:
        hub_key = start(hub, synced=True)
        press_and_release(hub)
        argv = ["command", HUB, "silence", "--operator", "officer-7", "--commune", COMMUNE]
        argv += ["--broker", mosquitto.address, "--data-dir", str(receiver_dir), "--wait"]
        assert main([*argv, "--hub-key", hub_key.text, "--arg", "note=test"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["ok"] is True and result["silenced"] == ["siren"]
        assert result["operator"] == "officer-7" and result["command_id"]
        assert hub.board.outputs()["siren"] is False
        # The wrong hub key: the result is printed, the exit status says it is not verified.
        assert main([*argv, "--hub-key", SigningKey.generate().public.text]) == 1
        assert json.loads(capsys.readouterr().out)["ok"] is True
    assert commune.counter.last() == 2


def test_the_counter_is_reserved_durably_and_a_damaged_file_is_not_reused(
    tmp_path: Path,
) -> None:
    store = CounterStore(tmp_path / "command-counter")
    assert [store.reserve() for _ in range(3)] == [1, 2, 3]
    assert CounterStore(store.path).reserve() == 4  # a new process goes on from the file
    store.path.write_text("garbage")
    with pytest.raises(CounterError, match="damaged"):
        store.reserve()


def test_the_replay_window(tmp_path: Path) -> None:
    window = ReplayWindow(tmp_path / REPLAY_FILE)
    assert window.admit("k", 100) is None
    assert window.admit("k", 90) is None  # out of order, inside the window
    assert "already used" in str(window.admit("k", 90))
    assert "too old" in str(window.admit("k", 100 - WINDOW))
    assert window.admit("k", 100 - WINDOW + 1) is None
    assert window.admit("other-key", 1) is None  # each signer counts on its own
    window.close()
    again = ReplayWindow(tmp_path / REPLAY_FILE)
    assert "already used" in str(again.admit("k", 100)) and again.highest("k") == 100
    again.close()


def test_what_a_counter_file_yields_is_carried_over(tmp_path: Path) -> None:
    path = tmp_path / REPLAY_FILE
    window = ReplayWindow(path)
    assert window.admit("k", 500) is None and window.admit("k", 480) is None
    window.close()
    assert salvage_highest(path) == {"k": 500}


def test_a_file_that_is_not_sqlite_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / REPLAY_FILE
    path.write_bytes(b"not a database at all" * 100)
    window = ReplayWindow(path)
    assert list(tmp_path.glob(f"{REPLAY_FILE}.damaged-*"))
    assert window.admit("k", 1) is None
    window.close()


def test_on_a_full_disk_a_command_is_refused_with_the_reason_and_its_counter_not_used(
    tmp_path: Path,
    small_disk: Path,  # noqa: F811 - the fixture imported above
) -> None:
    commune = Commune(tmp_path / "receiver")
    window = ReplayWindow(small_disk / REPLAY_FILE)
    check = SignedCommandCheck(commune.key.public, HUB, COMMUNE, window)
    first, second = commune.command(), commune.command()

    def verdict(body: dict[str, Any]) -> Any:
        return check.check("silence", body, now=time.time(), clock_synced=True,
                           message_expiry_s=None)  # fmt: skip

    assert verdict(first).refusal is None
    filler = fill(small_disk)
    refused = verdict(second)
    assert refused.refusal is not None and "counter file failed" in refused.refusal
    filler.unlink()
    assert verdict(second).refusal is None  # the counter was not used up by the failure
    window.close()
