"""What a fleet run found: events made, published, receipted and stored, duplicates, seq gaps,
what is still unreceipted, latencies, and every loss. ``ok`` is False on any loss: an event
never receipted, or (when stores were read) missing from every store.

Built from the hubs' ledgers once their loops have stopped (nothing changes them any more),
from the full hubs' outbox rows, and from the ids read from the receivers' stores.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.events import Priority
from hw_sim.fleet.full_hubs import DELIVERED, OutboxRow
from hw_sim.fleet.ledger import HubLedger, LatencyBook

SHOWN = 20  # losses and gappy hubs listed by name; the rest are counted
PRIORITY_NAMES = {int(p): p.name.lower() for p in Priority}


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of values already sorted."""
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered) / 100)))
    return ordered[rank - 1]


def latency_figures(values: Iterable[float]) -> dict[str, Any]:
    ordered = sorted(values)
    if not ordered:
        return {"count": 0}
    return {
        "count": len(ordered),
        "p50": round(percentile(ordered, 50), 1),
        "p90": round(percentile(ordered, 90), 1),
        "p99": round(percentile(ordered, 99), 1),
        "max": round(ordered[-1], 1),
    }


@dataclass(frozen=True)
class LightHubResult:
    hub: str
    commune: str
    ledger: HubLedger
    counters: dict[str, int]
    ever_connected: bool


@dataclass(frozen=True)
class FullHubResult:
    hub: str
    commune: str
    rows: list[OutboxRow]
    telemetry_sent: int
    panics: int
    control_failures: int


@dataclass
class Loss:
    hub: str
    seq: int
    id: str
    why: str


@dataclass
class Summary:
    profile: dict[str, Any]
    connect_s: float | None
    interrupted: bool = False
    events: dict[str, Any] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)  # unreceipted events by kind
    seq_gaps: dict[str, Any] = field(default_factory=dict)
    latency_ms: dict[str, Any] = field(default_factory=dict)
    full_hubs: list[dict[str, Any]] = field(default_factory=list)
    links: dict[str, int] = field(default_factory=dict)
    losses: list[Loss] = field(default_factory=list)
    never_connected: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.losses

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "interrupted": self.interrupted,
            "profile": self.profile,
            "connect_s": self.connect_s,
            "events": self.events,
            "unreceipted_by_kind": self.by_kind,
            "seq_gaps": self.seq_gaps,
            "latency_ms": self.latency_ms,
            "full_hubs": self.full_hubs,
            "links": self.links,
            "never_connected": {"count": len(self.never_connected),
                                "hubs": self.never_connected[:SHOWN]},
            "loss": {
                "count": len(self.losses),
                "by_reason": dict(Counter(loss.why for loss in self.losses)),
                "first": [vars(loss) for loss in self.losses[:SHOWN]],
            },
        }  # fmt: skip


def summarize(
    profile: dict[str, Any],
    light: list[LightHubResult],
    full: list[FullHubResult],
    books: list[LatencyBook],
    stores: list[list[str]] | None,
    *,
    connect_s: float | None,
    interrupted: bool = False,
) -> Summary:
    summary = Summary(profile=profile, connect_s=connect_s, interrupted=interrupted)
    stored_once, store_dupes = _union(stores)
    made = published = resent = receipted = duplicates = unknown = outstanding = 0
    stored = 0
    kinds: Counter[str] = Counter()
    links: Counter[str] = Counter()
    gappy: list[tuple[str, list[int]]] = []
    store_gappy: list[tuple[str, list[int]]] = []
    for hub in light:
        ledger = hub.ledger
        made += ledger.last_seq
        published += hub.counters["published"]
        resent += hub.counters["resent"]
        duplicates += ledger.duplicates
        unknown += ledger.unknown
        outstanding += len(ledger.pending)
        receipted += ledger.last_seq - len(ledger.pending)
        links.update({k: v for k, v in hub.counters.items() if k not in ("published", "resent")})
        if not hub.ever_connected:
            summary.never_connected.append(hub.hub)
        for pending in ledger.pending.values():
            kinds[pending.kind] += 1
        gaps = ledger.gaps()
        if gaps:
            gappy.append((hub.hub, gaps))
        lost: dict[int, tuple[str, bool, bool | None]] = {
            p.seq: (event_id, False, None) for event_id, p in ledger.pending.items()
        }
        if stored_once is not None:
            missing = ledger.missing_from(stored_once)
            stored += ledger.last_seq - len(missing)
            lost = {seq: (i, r, True) for seq, (i, r, _) in lost.items()}
            for seq, event_id in missing:
                lost[seq] = (event_id, seq not in lost, False)
            holes = _holes(ledger.last_seq, {seq for seq, _ in missing})
            if holes:
                store_gappy.append((hub.hub, holes))
        _add_losses(summary, hub.hub, lost)
    full_made, full_receipted, full_stored = _full(summary, full, stored_once)
    summary.events = {
        "made": made + full_made,
        "published": published,
        "resent": resent,
        "receipted": receipted + full_receipted,
        "duplicates_receipted": duplicates,
        "unknown_receipted": unknown,
        "outstanding": outstanding + (full_made - full_receipted),
        "stored": None if stored_once is None else stored + full_stored,
        "missing_from_store": None
        if stored_once is None
        else sum(1 for loss in summary.losses if "not in the store" in loss.why),
        "duplicates_in_store": None if stores is None else store_dupes,
    }
    summary.by_kind = dict(sorted(kinds.items()))  # what is still unreceipted, by kind
    summary.seq_gaps = {
        "hubs": len(gappy),
        "total": sum(len(g) for _, g in gappy),
        "first": [{"hub": h, "seqs": g[:SHOWN]} for h, g in gappy[:SHOWN]],
    }
    if stored_once is not None:
        summary.seq_gaps["in_store"] = {
            "hubs": len(store_gappy),
            "total": sum(len(g) for _, g in store_gappy),
            "first": [{"hub": h, "seqs": g[:SHOWN]} for h, g in store_gappy[:SHOWN]],
        }
    summary.latency_ms = _latencies(books)
    summary.links = dict(sorted(links.items()))
    return summary


def _union(stores: list[list[str]] | None) -> tuple[set[str] | None, int]:
    """Every id in any store, and how many ids are in more than one (the union is the record:
    one id twice in it is a duplicate)."""
    if stores is None:
        return None, 0
    seen: Counter[str] = Counter()
    for ids in stores:
        seen.update(set(ids))
    return set(seen), sum(1 for n in seen.values() if n > 1)


def _holes(last_seq: int, missing: set[int]) -> list[int]:
    """Missing seqs below the highest one present."""
    top = last_seq
    while top and top in missing:
        top -= 1
    return sorted(s for s in missing if s < top)


def _latencies(books: list[LatencyBook]) -> dict[str, Any]:
    merged: dict[int, list[float]] = {}
    for book in books:
        for priority, values in book.by_priority.items():
            merged.setdefault(priority, []).extend(values)
    out: dict[str, Any] = {"all": latency_figures(v for vs in merged.values() for v in vs)}
    for priority in sorted(merged):
        out[PRIORITY_NAMES.get(priority, str(priority))] = latency_figures(merged[priority])
    return out


def _full(
    summary: Summary, full: list[FullHubResult], stored: set[str] | None
) -> tuple[int, int, int]:
    """Account for the full hubs; (made, receipted, stored) over all of them."""
    made = receipted = stored_count = 0
    for hub in full:
        delivered = [r for r in hub.rows if r.state == DELIVERED]
        made += len(hub.rows)
        receipted += len(delivered)
        entry: dict[str, Any] = {
            "hub": hub.hub,
            "commune": hub.commune,
            "last_seq": max((r.seq for r in hub.rows), default=0),
            "events": len(hub.rows),
            "receipted": len(delivered),
            "telemetry_sent": hub.telemetry_sent,
            "panics_pressed": hub.panics,
            "control_failures": hub.control_failures,
        }
        lost: dict[int, tuple[str, bool, bool | None]] = {}
        for row in hub.rows:
            in_store = None if stored is None else row.id in stored
            if row.state != DELIVERED or in_store is False:
                lost[row.seq] = (row.id, row.state == DELIVERED, in_store)
        if stored is not None:
            missing = sum(1 for r in hub.rows if r.id not in stored)
            stored_count += len(hub.rows) - missing
            entry["missing_from_store"] = missing
        _add_losses(summary, hub.hub, lost)
        book = LatencyBook()
        for row in delivered:
            if row.created_at is not None and row.delivered_at is not None:
                book.add(row.priority, (row.delivered_at - row.created_at) * 1000.0)
        entry["commit_to_receipt_ms"] = _latencies([book])
        summary.full_hubs.append(entry)
    return made, receipted, stored_count


def _add_losses(summary: Summary, hub: str, lost: dict[int, tuple[str, bool, bool | None]]) -> None:
    """One loss per event: (seq -> (id, receipted, in a store or None when none was read))."""
    for seq in sorted(lost):
        event_id, receipted, in_store = lost[seq]
        summary.losses.append(Loss(hub, seq, event_id, loss_reason(receipted, in_store)))


def loss_reason(receipted: bool, in_store: bool | None) -> str:
    if receipted:
        return "receipted but not in the store"  # a receiver receipted what it did not keep
    if in_store is None:
        return "never receipted"
    return "never receipted (stored)" if in_store else "never receipted, not in the store"


def render_text(summary: Summary) -> str:
    """The summary for a person: a few lines, the losses named."""
    d = summary.as_dict()
    e = d["events"]
    p = d["profile"]
    lines = [
        f"fleet: {p['hubs']} hubs + {p['full_hubs']} full hub(s) on {len(p['brokers'])}"
        f" broker(s), {p['duration_s']:g} s, drill {p['drill']} panic(s)"
        + (" (interrupted)" if summary.interrupted else ""),
        f"connected in {summary.connect_s:.1f} s" if summary.connect_s is not None
        else "not every hub connected",
        f"events: {e['made']} made, {e['published']} published ({e['resent']} re-sent),"
        f" {e['receipted']} receipted, {e['outstanding']} outstanding",
        f"duplicates receipted: {e['duplicates_receipted']}"
        + (f", ids from elsewhere: {e['unknown_receipted']}" if e["unknown_receipted"] else ""),
    ]  # fmt: skip
    if e["stored"] is not None:
        lines.append(
            f"store: {e['stored']} stored, {e['missing_from_store']} missing,"
            f" {e['duplicates_in_store']} in more than one store"
        )
    gaps = d["seq_gaps"]
    lines.append(f"seq gaps (receipts): {gaps['total']} in {gaps['hubs']} hub(s)")
    if "in_store" in gaps:
        lines.append(
            f"seq gaps (store): {gaps['in_store']['total']} in {gaps['in_store']['hubs']} hub(s)"
        )
    lines.append("publish -> receipt latency (ms):")
    for name, fig in d["latency_ms"].items():
        if fig["count"]:
            lines.append(
                f"  {name:<10} n={fig['count']:<8} p50 {fig['p50']:>8.1f}  p90 {fig['p90']:>8.1f}"
                f"  p99 {fig['p99']:>8.1f}  max {fig['max']:>8.1f}"
            )
    for hub in d["full_hubs"]:
        alarm = hub["commit_to_receipt_ms"].get("alarm", {})
        lines.append(
            f"full hub {hub['hub']}: {hub['events']} events, {hub['receipted']} receipted"
            + (f", alarm p99 {alarm['p99']:.1f} ms" if alarm.get("count") else "")
        )
    if summary.never_connected:
        lines.append(f"never connected: {len(summary.never_connected)} hub(s)")
    loss = d["loss"]
    if loss["count"]:
        reasons = ", ".join(f"{n} {why}" for why, n in loss["by_reason"].items())
        lines.append(f"LOSS: {loss['count']} event(s): {reasons}")
        for item in loss["first"]:
            lines.append(f"  {item['hub']} seq {item['seq']} {item['id']}: {item['why']}")
        if loss["count"] > len(loss["first"]):
            lines.append(f"  ... and {loss['count'] - len(loss['first'])} more")
    else:
        lines.append("no loss")
    return "\n".join(lines)
