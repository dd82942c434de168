"""The duty desk: what the police console runs beside the receiver, in the same process.

- follows the stored events into alerts (``commune.alerts``);
- records each hub's retained ``status``, its ``health`` (verified against the hub's enrolled
  key) and its ``cmd_result``s from MQTT (``commune.hub_watch``);
- supervises the hubs (``commune.supervision``): a hub offline, silent past its window, or
  expected and never heard raises a communication-trouble event (Contact ID 350) of the
  receiver's own (``commune.hub_troubles``), restored when it is back; so do alarms left
  undelivered and a clock left unsynchronised;
- escalates alerts nobody acknowledges (``commune.notify.escalation``, once a second) and sends
  the notifications from their durable queue (``commune.notify.sender``, a thread of its own);
- sends operators' commands, signed by the commune for the operator.

Listeners (``listen``) are told of every change, on the desk's thread: ``{"type": "alert",
"id": ..., "action": ...}``, ``{"type": "hub", "hub": ...}``, ``{"type": "command", "id":
...}``, and ``{"type": "changed"}`` when another process wrote to the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from commune.alerts import Alert, AlertBook
from commune.audit import SYSTEM, AuditLog
from commune.commands import COUNTER_FILE, CommandSendError, CounterStore, sign_command
from commune.config import ReceiverConfig
from commune.db import OPEN_ERRORS, open_db, shown_location
from commune.hub_troubles import TroubleLog
from commune.hub_watch import HubReport, HubWatch
from commune.hubs import CommandRecord, ExpectedHub, HubBook, sign_of_life
from commune.leader import Leadership
from commune.locations import store_location
from commune.notify.escalation import Escalator
from commune.notify.queue import NotificationQueue
from commune.notify.sender import NotificationSender
from commune.store import EventStore
from commune.supervision import Trouble, assess
from commune.trust import HubKeyring, load_commune_key
from core.errors import TuquanError
from core.events import NEW, RESTORE, utc_iso
from core.safe_json import loads_untrusted
from core.signing import KeyFileError, SigningKey
from gateway.broker import BrokerSettings

log = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], None]
COMMANDS = ("silence", "ping", "snapshot")
MAX_HEALTH_BYTES = 256 * 1024
MAX_RESULT_BYTES = 16 * 1024
TICK_S = 0.25  # how often the desk looks without being woken (another process's writes)
SUPERVISE_EVERY_S = 1.0
OPERATOR_ACTIONS = ("acknowledged", "closed")  # what another process (tuquan watch) may do
TOLD_ACTIONS = frozenset({"opened", "joined", "restored", *OPERATOR_ACTIONS})


class DeskError(TuquanError):
    """The desk cannot start (its store, its key)."""


class Desk:
    """See the module docstring. ``db``, ``alerts``, ``hubs`` and ``audit`` may be read from
    any thread; ``start`` opens the store, connects, and starts the desk's thread."""

    def __init__(
        self,
        data_dir: Path,
        config: ReceiverConfig,
        broker: BrokerSettings,
        *,
        clock: Callable[[], float] = time.time,
        store: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.config = config
        # The console serves one commune (its hubs, their commands); see docs/province.md.
        self.commune = config.receiver.scope.label
        self.clock = clock
        self.db_path = store_location(config.receiver.store, self.data_dir, store)
        self.store_shown = shown_location(self.db_path)
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # The events table is the receiver's; made here too so the desk can start first.
            EventStore(self.db_path).close()
            self.db = open_db(self.db_path)
            self.audit = AuditLog(self.db)
            self.alerts = AlertBook(self.db, self.audit)
            self.hubs = HubBook(self.db)
            self.trouble_log = TroubleLog(self.db, self.commune)
        except OPEN_ERRORS as exc:
            # A damaged or unreadable file is left as it is, for the operator to look at.
            raise DeskError(f"cannot open the store {self.store_shown}: {exc}") from exc
        self.hubs.set_expected(
            ExpectedHub(
                hub=h.id,
                name=h.name,
                place=h.place,
                latitude=h.latitude,
                longitude=h.longitude,
                contact=h.contact,
                supervision_s=h.supervision_s,
            )
            for h in config.hubs
        )
        self._sign_of_life = sign_of_life(self.hubs)
        self._expected_hubs = frozenset(h.id for h in config.hubs)
        self.watch = HubWatch(broker, self.commune)
        self.watch.on_report = self.wake
        self.notifications = NotificationQueue(self.db, self.audit)
        self.escalator = Escalator(
            self.alerts,
            self.notifications,
            config.escalation,
            self.hubs,
            language=config.console.language,
        )
        # Several consoles may serve one store; one of them does the desk's own work.
        self.leadership = Leadership(self.db_path, "desk")
        self.sender = NotificationSender(
            self.db, self.audit, config.notify, may_send=lambda: self.leadership.held
        )
        self.counts = {
            "bad_reports": 0,
            "unverified_reports": 0,
            "listener_errors": 0,
            "failed_rounds": 0,
        }
        self._failing = ""  # why the last round failed, while rounds fail
        self._keyring = HubKeyring()
        self._keys_store: EventStore | None = None
        self._commune_key: SigningKey | None = None
        self._counter = CounterStore(self.data_dir / COUNTER_FILE)
        self._listeners: list[Listener] = []
        self._listeners_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._running_since = clock()
        self._last_supervision = 0.0
        self._data_version = self.db.data_version()
        self._audit_seen = self.audit.last_id()
        self._logged: set[tuple[str, str]] = set()

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        try:
            self._commune_key = load_commune_key(self.data_dir)
        except (KeyFileError, OSError) as exc:
            raise DeskError(f"cannot load the commune's signing key: {exc}") from exc
        self._running_since = self.clock()
        self.watch.start()
        self.sender.start()
        self._thread = threading.Thread(target=self._main, name="desk", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.sender.stop(timeout)
        self.watch.stop()
        self.leadership.release()

    def wake(self) -> None:
        """Look now (a new event was stored, a hub report came)."""
        self._wake.set()

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with each change notice; returns the function that stops it."""
        with self._listeners_lock:
            self._listeners.append(listener)

        def unlisten() -> None:
            with self._listeners_lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unlisten

    def _tell(self, notice: dict[str, Any]) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(notice)
            except Exception as exc:
                self.counts["listener_errors"] += 1
                log.warning("a change listener failed: %r", exc)

    # -- operators' actions (any thread) ---------------------------------------------------

    def acknowledge(self, alert_id: int, user: str) -> Alert:
        """Acknowledge (stops the alert's escalation ladder); raises AlertError."""
        alert = self.alerts.acknowledge(alert_id, user)
        self._tell({"type": "alert", "id": alert_id, "action": "acknowledged"})
        self.wake()  # the follow-ups to who was told go now
        return alert

    def close(self, alert_id: int, user: str, outcome: str, note: str = "") -> Alert:
        alert = self.alerts.close(alert_id, user, outcome, note)
        self._tell({"type": "alert", "id": alert_id, "action": "closed"})
        return alert

    def send_command(
        self,
        hub: str,
        name: str,
        args: Mapping[str, Any],
        operator: str,
        alert_id: int | None = None,
    ) -> CommandRecord:
        """Sign ``name`` for ``operator``, publish it to the hub, record and audit it; the
        hub's ``cmd_result`` is recorded on the record when it comes (``hubs.command(id)``).
        Raises CommandSendError when it cannot be signed or published."""
        if name not in COMMANDS:
            raise CommandSendError(f"unknown command {name!r}: use {', '.join(COMMANDS)}")
        if self._commune_key is None:
            raise CommandSendError("the desk is not started: no commune key")
        try:
            command = sign_command(
                self._commune_key,
                self.commune,
                hub,
                name,
                args,
                operator,
                counter_store=self._counter,
            )
        except (TuquanError, OSError, ValueError) as exc:
            raise CommandSendError(f"the command could not be signed: {exc}") from exc
        self.hubs.record_command(command, alert_id)
        try:
            self.watch.publish(command)
        except CommandSendError as exc:
            self.audit.append(
                operator,
                "command_failed",
                alert_id=alert_id,
                hub=hub,
                detail={"command": name, "id": command["id"], "error": str(exc)},
            )
            raise
        self.audit.append(
            operator,
            "command_sent",
            alert_id=alert_id,
            hub=hub,
            detail={"command": name, "id": command["id"], "args": dict(args)},
        )
        self._tell({"type": "command", "id": command["id"], "hub": hub, "alert_id": alert_id})
        record = self.hubs.command(str(command["id"]))
        assert record is not None
        return record

    # -- the desk's thread -----------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._keys_store = EventStore(self.db_path)
        except Exception as exc:
            log.error("desk: the store's hub keys cannot be read: %s", exc)
        while not self._stopping.is_set():
            self._wake.wait(TICK_S)
            self._wake.clear()
            try:
                self._round()
            except Exception as exc:
                # The store may be failing (a full disk): the next round tries again, and
                # nothing was taken out of it that is not still there. Said once per cause.
                why = f"{type(exc).__name__}: {exc}"
                if why != self._failing:
                    log.exception("desk round failed; retrying every second")
                    self._failing = why
                self.counts["failed_rounds"] += 1
                self._stopping.wait(1.0)
            else:
                if self._failing:
                    log.warning("desk rounds work again (after: %s)", self._failing)
                    self._failing = ""
        if self._keys_store is not None:
            self._keys_store.close()

    def _round(self) -> None:
        self._refresh_keyring()
        for report in self.watch.take():
            self._take_report(report)
        if not self.leadership.try_take():
            self._tell_others_changes()
            return
        self._follow()
        now = self.clock()
        if now - self._last_supervision >= SUPERVISE_EVERY_S:
            self._last_supervision = now
            self._supervise(now)
            self._follow()
            # Also the follow-ups: who was told hears that an alert was acknowledged.
            if self.escalator.tick(now):
                self.sender.wake()
        version = self.db.data_version()
        if version != self._data_version:
            # Another connection wrote: most often the receiver storing events (no notice:
            # their alerts are told as the desk opens them). Another process acting on an
            # alert (tuquan watch) leaves an audit record: that is worth a page refresh.
            self._data_version = version
            seen, self._audit_seen = self._audit_seen, self.audit.last_id()
            if self.audit.any_after(seen, OPERATOR_ACTIONS, upto=self._audit_seen):
                self._tell({"type": "changed"})

    def _tell_others_changes(self) -> None:
        """Another console holds the desk's duties: tell this one's pages what it did (the
        alerts it opened, joined, closed) from the audit trail, which records each."""
        version = self.db.data_version()
        if version == self._data_version:
            return
        self._data_version = version
        for record in self.audit.after(self._audit_seen, limit=1000):
            self._audit_seen = record.id
            if record.alert_id is not None and record.action in TOLD_ACTIONS:
                self._tell({"type": "alert", "id": record.alert_id, "action": record.action})

    def _refresh_keyring(self) -> None:
        if self._keys_store is None:
            return
        try:
            self._keyring.refresh(self._keys_store)
        except Exception as exc:  # the keys as last read stay in force
            log.error("desk: enrolled hub keys could not be read: %s", exc)

    def _follow(self) -> None:
        for change in self.alerts.follow(on_event=self._sign_of_life):
            self._tell({"type": "alert", "id": change.alert_id, "action": change.action})

    # -- hub reports -----------------------------------------------------------------------

    def _take_report(self, report: HubReport) -> None:
        try:
            if report.what == "status":
                self._take_status(report)
            elif report.what == "health":
                self._take_health(report)
            else:
                self._take_result(report)
        except (ValueError, TypeError, RecursionError) as exc:
            self._bad(report, f"{type(exc).__name__}: {exc}")

    def _bad(self, report: HubReport, why: str, counter: str = "bad_reports") -> None:
        self.counts[counter] += 1
        key = (report.hub, f"{report.what}:{why[:60]}")
        if key not in self._logged and len(self._logged) < 10_000:
            self._logged.add(key)
            log.warning("dropped %s of hub %s: %s", report.what, report.hub[:64], why[:200])

    def _take_status(self, report: HubReport) -> None:
        text = report.payload.decode("ascii", "replace").strip()
        if text not in ("online", "offline"):
            self._bad(report, "status is neither online nor offline")
            return
        if (
            self._keyring.enabled
            and not self._keyring.knows(report.hub)
            and not self._expected(report.hub)
        ):
            # A status carries no signature: with enrolment on, one of a hub that is neither
            # enrolled nor expected is anybody's, and would only add a row per made-up name.
            self._bad(report, "status of a hub neither enrolled nor expected")
            return
        self.hubs.record_status(report.hub, text, report.received_at)
        self._tell({"type": "hub", "hub": report.hub})

    @property
    def signatures_in_use(self) -> bool:
        """Some hub is enrolled: health, results and statuses are judged by signatures."""
        return self._keyring.enabled

    def _expected(self, hub: str) -> bool:
        return hub in self._expected_hubs

    def _verified(self, report: HubReport, obj: Any, purpose: str) -> bool | None | str:
        """True/None (not checked) to take ``obj``; a string says why it is refused."""
        if not isinstance(obj, dict):
            return f"JSON {type(obj).__name__}, not an object"
        verdict = self._keyring.check(report.hub, obj, purpose)
        if verdict.verified is False:
            return f"unverified: {verdict.reason}"
        return verdict.verified

    def _take_health(self, report: HubReport) -> None:
        obj = loads_untrusted(report.payload, max_bytes=MAX_HEALTH_BYTES)
        verdict = self._verified(report, obj, "health")
        if isinstance(verdict, str):
            counter = "unverified_reports" if verdict.startswith("unverified") else "bad_reports"
            self._bad(report, verdict, counter)
            return
        if obj.get("hub") not in (None, report.hub):
            self._bad(report, "its hub is not the topic's hub")
            return
        self.hubs.record_health(report.hub, obj, verdict, report.received_at)
        self._tell({"type": "hub", "hub": report.hub})

    def _take_result(self, report: HubReport) -> None:
        obj = loads_untrusted(report.payload, max_bytes=MAX_RESULT_BYTES)
        verdict = self._verified(report, obj, "cmd_result")
        if isinstance(verdict, str):
            counter = "unverified_reports" if verdict.startswith("unverified") else "bad_reports"
            self._bad(report, verdict, counter)
            return
        record = self.hubs.record_result(report.hub, obj, report.received_at)
        if record is None:
            return  # not a command of ours
        self.audit.append(
            SYSTEM,
            "command_result",
            alert_id=record.alert_id,
            hub=report.hub,
            detail={"command": record.name, "id": record.id, "ok": record.ok, "result": obj},
        )
        self._tell(
            {"type": "command", "id": record.id, "hub": report.hub, "alert_id": record.alert_id}
        )

    # -- supervision -----------------------------------------------------------------------

    def _supervise(self, now: float) -> None:
        raised = self.trouble_log.raised()
        signed = self._keyring.enabled
        windows = [h.supervision_s for h in self.config.hubs if h.supervision_s]
        shortest = min([self.config.supervision.default_window_s, *windows])
        rows = {h.hub: h for h in self.hubs.worth_a_look(utc_iso(now - shortest), signed=signed)}
        for name in raised.keys() - rows.keys():  # a raised trouble may be over: judge it
            found = self.hubs.get(name)
            if found is not None:
                rows[name] = found
        for hub in rows.values():
            troubles = assess(
                hub,
                now,
                self.config.supervision,
                running_since=self._running_since,
                signed=signed,
            )
            had = raised.get(hub.hub, {})
            for kind, trouble in troubles.items():
                if kind not in had:
                    self.trouble_log.report(hub.hub, trouble, NEW, now)
            for kind in had:
                if kind not in troubles:
                    self.trouble_log.report(hub.hub, Trouble(kind, "back"), RESTORE, now)

    def troubles(self) -> list[dict[str, Any]]:
        """The receiver-side troubles raised now, by hub."""
        return self.trouble_log.all()
