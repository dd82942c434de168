"""Signatures' cost: sign + verify per event against json.dumps of the same event, and the
drain of a backlog signed against unsigned, in the same run.

Per event: ``json.dumps`` of the event (its unsigned payload, the bare baseline); the hub's
signed payload (gateway/signed_payloads.py: canonical JSON, Ed25519 sign, dumps); a receiver's
check (parse, canonical JSON, Ed25519 verify). Drain: two offline outboxes of the same
telemetry, one filled by a hub with a key and one without, drained as bench.drain drains
(rounds interleaved, medians). Signing is paid at commit, so the fill rates are compared too.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench import common, drain
from core.events import Event
from core.signing import SigningKey, verify
from gateway.signed_payloads import event_payload

HUB = "bench-hub"
ROUNDS = 3


def _events(n: int) -> list[Event]:
    kinds = ("panic", "telemetry", "person")
    return [
        Event(
            kind=kinds[i % 3],
            zone="market-gate",
            source="bench",
            data={"n": i, "temp_c": 31.5, "score": 0.87},
            seq=i + 1,
        )
        for i in range(n)
    ]


def _per_event_us(fn: Callable[[Any], object], items: list[Any]) -> float:
    """The best of three passes over ``items``, in µs per item (the least disturbed pass)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter_ns()
        for item in items:
            fn(item)
        best = min(best, (time.perf_counter_ns() - t0) / len(items) / 1000)
    return best


def per_event(n: int) -> dict[str, float]:
    key = SigningKey.generate()
    events = _events(n)
    signed = [event_payload(e, HUB, key) for e in events]
    public = key.public

    def check(payload: bytes) -> None:
        if not verify("event", json.loads(payload), public):
            raise AssertionError("a signed event did not verify")

    dumps = _per_event_us(lambda e: e.to_json(HUB), events)
    sign = _per_event_us(lambda e: event_payload(e, HUB, key), events)
    check_us = _per_event_us(check, signed)
    parse = _per_event_us(json.loads, [e.to_json(HUB) for e in events])
    return {
        "dumps_us": round(dumps, 2),
        "sign_us": round(sign, 2),
        "parse_us": round(parse, 2),
        "parse_verify_us": round(check_us, 2),
        "unsigned_bytes": round(statistics.mean(len(e.to_json(HUB)) for e in events)),
        "signed_bytes": round(statistics.mean(len(p) for p in signed)),
    }


def main(argv: list[str] | None = None) -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--no-drain", action="store_true", help="only the per-event figures")
    p.add_argument("--no-alarm", action="store_true", help="skip alarm latency on against off")
    args = p.parse_args(argv)
    per = per_event(2_000 if args.quick else 20_000)
    common.table(
        "Per event (best of 3 passes)",
        ["step", "µs/event", "x json.dumps"],
        [
            ["json.dumps of the event (unsigned payload)", per["dumps_us"], 1.0],
            [
                "signed payload (canonical + Ed25519 sign + dumps)",
                per["sign_us"],
                common.ratio(per["sign_us"], per["dumps_us"]),
            ],
            ["json.loads (receiver, unsigned)", per["parse_us"], ""],
            [
                "json.loads + verify (receiver, signed)",
                per["parse_verify_us"],
                common.ratio(per["parse_verify_us"], per["dumps_us"]),
            ],
        ],
    )
    print(f"\npayload: {per['unsigned_bytes']} B unsigned, {per['signed_bytes']} B signed")
    results: dict[str, Any] = {"per_event": per}
    if not args.no_drain:
        results["drain"] = drain_both(args.quick, args.data_root)
    if not args.no_alarm:
        results["alarm"] = alarm_both(args.quick, args.data_root)
    common.report("signing", args, results)


def drain_both(quick: bool, data_root: str) -> dict[str, Any]:
    n = 5_000 if quick else 20_000
    workdir = common.disk_dir(data_root, "bench-signing-")
    common.log_to_file(workdir / "hub.log")
    rates: dict[str, list[float]] = {"unsigned": [], "signed": []}
    fills: dict[str, tuple[float, int]] = {}
    try:
        for name, signer in (("unsigned", None), ("signed", SigningKey.generate())):
            fills[name] = drain.fill(workdir / f"{name}.sqlite3", n, signer)
        with common.mosquitto() as broker:
            for _ in range(ROUNDS):  # interleaved, medians: the machine is shared and noisy
                for name in rates:
                    path = workdir / f"{name}.sqlite3"
                    rates[name].append(drain.run_hub(broker, path, n, *drain.DEFAULT, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    off, on = statistics.median(rates["unsigned"]), statistics.median(rates["signed"])
    fill_off, fill_on = (n / fills[k][0] for k in ("unsigned", "signed"))
    common.table(
        f"Backlog of {n:,} telemetry events, unsigned against signed",
        ["case", "unsigned", "signed", "signed / unsigned"],
        [
            ["payload bytes", fills["unsigned"][1], fills["signed"][1], ""],
            ["offline fill, events/s", round(fill_off), round(fill_on),
             common.ratio(fill_on, fill_off)],
            [f"drain msgs/s (median of {ROUNDS})", round(off), round(on), common.ratio(on, off)],
        ],
    )  # fmt: skip
    return {
        "events": n,
        "payload_bytes": {k: v[1] for k, v in fills.items()},
        "fill_events_s": {"unsigned": round(fill_off), "signed": round(fill_on)},
        "drain_msgs_s_all": {k: [round(r) for r in v] for k, v in rates.items()},
        "drain_msgs_s": {"unsigned": round(off), "signed": round(on)},
        "drain_ratio": common.ratio(on, off),
        "fill_ratio": common.ratio(fill_on, fill_off),
    }


def alarm_both(quick: bool, data_root: str) -> dict[str, Any]:
    """bench.alarm_latency's idle cases, run for a hub that signs and for the same hub without a
    key (its key loader made to find none, as when the key file cannot be read), one after the
    other in this process; each run has its own bare publish, and the hubs' p99s are compared."""
    from bench import alarm_latency
    from gateway import service

    n = 200 if quick else 600
    p99: dict[str, float] = {}
    bare: dict[str, float] = {}
    real_loader = service.load_hub_keys
    try:
        for name in ("signed", "unsigned", "signed-again"):
            keyless = lambda _dir: None  # noqa: E731 - as when the key file cannot be read
            service.load_hub_keys = real_loader if name != "unsigned" else keyless
            workdir = common.disk_dir(data_root, f"bench-signing-alarm-{name}-")
            try:
                with common.mosquitto() as broker:
                    rows, _ = alarm_latency.run(broker, workdir, n, draining=False)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            p99[name] = rows[2]["p99_ms"]
            bare[name] = rows[0]["p99_ms"]
    finally:
        service.load_hub_keys = real_loader
    # Each run's hub against its own bare publish: the machine's noise moves both.
    against_bare = {k: p99[k] / bare[k] for k in p99}
    signed = statistics.mean([against_bare["signed"], against_bare["signed-again"]])
    verdict = common.ratio(signed, against_bare["unsigned"])
    common.table(
        f"Alarm latency, {n} presses a run (signed, unsigned, signed again)",
        ["case", "hub p99 ms", "bare p99 ms", "hub / bare"],
        [[k, p99[k], bare[k], common.ratio(p99[k], bare[k])] for k in p99]
        + [["signed (mean of two) / unsigned, of hub / bare", "", "", verdict]],
    )
    print(f"target: signed <= 1.1x unsigned: {'met' if verdict <= 1.1 else 'NOT met'}")
    return {"presses": n, "hub_p99_ms": p99, "bare_p99_ms": bare,
            "signed_over_unsigned": verdict}  # fmt: skip


if __name__ == "__main__":
    main()
