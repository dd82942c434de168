"""The fleet's parts on their own: the ledger's accounting, the drill plan, the profile's checks,
the summary's arithmetic, and the command line's refusals."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from core.ids import new_event_id
from core.signing import KeyFileError, SigningKey
from hw_sim.fleet import FleetError, FleetProfile, HubTiming, broker_targets
from hw_sim.fleet.keys import read_public_key, write_public_keys
from hw_sim.fleet.ledger import HubLedger, LatencyBook
from hw_sim.fleet.load import drill_plan
from hw_sim.fleet.summary import LightHubResult, latency_figures, loss_reason, summarize
from tests.fleet_kit import tuquan

TARGETS = broker_targets([("127.0.0.1", 1883)], ["c1"])


def ledger_with(n: int) -> tuple[HubLedger, list[str]]:
    ledger = HubLedger(LatencyBook())
    ids = []
    for _ in range(n):
        event_id = new_event_id()
        pending = ledger.made(event_id, 3, "telemetry", b"{}")
        ledger.published(event_id, pending, mid=len(ids) + 1, now=100.0)
        ids.append(event_id)
    return ledger, ids


def test_the_ledger_counts_receipts_duplicates_and_strangers() -> None:
    ledger, ids = ledger_with(5)
    assert ledger.receipted([ids[0], ids[2]], now=100.25) == 2
    assert ledger.receipted([ids[0], "someone-elses"], now=101.0) == 0
    assert ledger.duplicates == 1 and ledger.unknown == 1
    assert set(ledger.pending) == {ids[1], ids[3], ids[4]}
    assert ledger.gaps() == [2]  # seq 2 unreceipted below the highest receipted (3)
    assert ledger.latency.by_priority[3].tolist() == [250.0, 250.0]
    assert ledger.seq_of(ids[4]) == 5 and ledger.seq_of("nope") is None
    assert ledger.missing_from({ids[0], ids[1]}) == [(3, ids[2]), (4, ids[3]), (5, ids[4])]


def test_a_puback_marks_only_its_own_publish() -> None:
    ledger, ids = ledger_with(1)
    pending = ledger.pending[ids[0]]
    ledger.published(ids[0], pending, mid=9, now=101.0)  # sent again: a new mid
    ledger.puback(1, True)  # the old one's PUBACK
    assert not pending.acked
    ledger.puback(9, True)
    assert pending.acked
    assert ledger.overdue(now=130.0, timeout_s=60.0) == []
    assert ledger.overdue(now=161.0, timeout_s=60.0) == [(ids[0], pending)]


def test_the_drill_spreads_panics_over_distinct_hubs_within_its_window() -> None:
    plan = drill_plan(random.Random(1), 100, start=50.0, within_s=10.0, targets=300)
    assert len(plan) == 100 and len({hub for _, hub in plan}) == 100
    assert all(50.0 <= t <= 60.0 for t, _ in plan)
    assert [t for t, _ in plan] == sorted(t for t, _ in plan)
    more = drill_plan(random.Random(1), 25, start=0.0, within_s=1.0, targets=10)
    assert len(more) == 25 and len({hub for _, hub in more}) == 10
    assert drill_plan(random.Random(1), 0, 0.0, 1.0, 10) == []


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"hubs": -1}, "--hubs"),
        ({"hubs": 0}, "no hub to run"),
        ({"duration_s": float("nan")}, "--duration-s"),
        ({"duration_s": 10**30}, "--duration-s"),
        ({"drill": 5, "drill_within_s": 100.0}, "--drill-within-s"),
        ({"telemetry_per_min": -1.0}, "--telemetry-per-min"),
        ({"hub_prefix": "Fleet!"}, "--hub-prefix"),
        ({"timing": HubTiming(health_s=0.0)}, "--health-s"),
        ({"timing": HubTiming(keepalive_s=0)}, "--keepalive-s"),
        ({"loops": 0}, "--loops"),
    ],
)
def test_the_profile_names_what_is_wrong(fields: dict[str, object], named: str) -> None:
    base: dict[str, object] = {"hubs": 10, "brokers": TARGETS}
    with pytest.raises(FleetError, match=named.replace("-", r"\-")):
        FleetProfile(**(base | fields))  # type: ignore[arg-type]


def test_brokers_get_one_commune_each_or_share_one() -> None:
    two = [("a", 1), ("b", 2)]
    assert [t.commune for t in broker_targets(two, [])] == ["fleet-c1", "fleet-c2"]
    assert [t.commune for t in broker_targets(two, ["x"])] == ["x", "x"]
    with pytest.raises(FleetError, match="one per broker"):
        broker_targets(two, ["x", "y", "z"])
    profile = FleetProfile(hubs=5, brokers=broker_targets(two, []))
    assert [profile.broker_of(n).host for n in range(5)] == ["a", "b", "a", "b", "a"]
    assert profile.hub_ids()[0] == "fleet-0001" and profile.communes == ["fleet-c1", "fleet-c2"]


def test_percentiles_are_nearest_rank() -> None:
    figures = latency_figures(float(n) for n in range(1, 101))
    assert figures == {"count": 100, "p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0}
    assert latency_figures([]) == {"count": 0}


def test_the_summary_is_one_loss_per_event_with_its_reason() -> None:
    ledger, ids = ledger_with(4)
    ledger.receipted(ids[:3], now=100.1)  # ids[3] never receipted
    hub = LightHubResult("h1", "c1", ledger, {"published": 4, "resent": 0}, True)
    stored = [[ids[0], ids[1]], [ids[1]]]  # ids[2] receipted yet missing; ids[1] in two stores
    summary = summarize({"hubs": 1}, [hub], [], [ledger.latency], stored, connect_s=0.1)
    assert not summary.ok
    assert [(loss.seq, loss.why) for loss in summary.losses] == [
        (3, "receipted but not in the store"),
        (4, "never receipted, not in the store"),
    ]
    assert summary.events["duplicates_in_store"] == 1
    assert summary.events["stored"] == 2 and summary.events["missing_from_store"] == 2
    assert summary.seq_gaps["in_store"]["total"] == 0  # nothing missing below seq 2, the top
    assert summary.seq_gaps["total"] == 0  # receipts: 1..3, and 4 is after them
    assert loss_reason(False, None) == "never receipted"
    assert loss_reason(False, True) == "never receipted (stored)"


def test_public_keys_are_written_and_read(tmp_path: Path) -> None:
    key = SigningKey.generate().public
    assert write_public_keys(tmp_path / "k.txt", [("h1", key)]) == 1
    assert (tmp_path / "k.txt").read_text() == f"h1 {key.text}\n"
    (tmp_path / "c.pub").write_text(key.text + "\nfingerprint line\n")
    assert read_public_key(tmp_path / "c.pub") == key
    (tmp_path / "bad.pub").write_bytes(b"\xff\xfe not a key")
    with pytest.raises(KeyFileError, match="bad.pub"):
        read_public_key(tmp_path / "bad.pub")
    (tmp_path / "empty.pub").write_text("")
    with pytest.raises(KeyFileError, match="empty.pub"):
        read_public_key(tmp_path / "empty.pub")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--hubs", "-3"], "--hubs"),
        (["--broker", "nohost"], "HOST:PORT"),
        (["--enrol"], "--enrol needs a --store"),
        (["--store", "/nonexistent/receiver.sqlite3"], "no such store"),
        (["--commune-key", "/nonexistent.pub"], "nonexistent.pub"),
        (["--broker", "a:1", "--broker", "b:2", "--commune", "x", "--commune", "y",
          "--commune", "z"], "--commune"),
    ],
)  # fmt: skip
def test_the_command_line_refuses_what_cannot_run(args: list[str], said: str) -> None:
    done = tuquan("fleet", "--quiet", *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert said in done.stderr
