"""``/api/v1``: the console's alerts, hubs, events and actions as JSON, for a province system
or a community app. Its OpenAPI document is ``/api/v1/openapi.json``.

Auth is the browser's session (then a POST needs the ``X-CSRF-Token`` header) or
``Authorization: Bearer <token>`` (``tuquan console token add NAME --role R``), with the same
roles as the pages: a viewer reads, an operator also acts. Every action is audited by the desk
with the user (``token:<name>`` for a token). Bad input is a 4xx with ``{"detail": ...}``:
parameters are bounded (``limit`` at most 1000, times ISO-8601, hub ids as in the config).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import AfterValidator
from starlette.exceptions import HTTPException

from commune.alerts import AlertError
from commune.commands import CommandSendError
from commune.desk import Desk
from console.alert_view import gather
from console.api_models import (
    AlertDetail,
    AlertList,
    AlertOut,
    AuditOut,
    CloseIn,
    CommandOut,
    ErrorOut,
    EventList,
    EventOut,
    HubList,
    HubOut,
    NoArgs,
    SnapshotArgs,
)
from console.auth import Principal, bearer_scheme, operator, viewer
from console.hub_view import hub_view
from console.params import (
    HUB_PATTERN,
    KIND_PATTERN,
    MAX_OFFSET,
    MAX_RFC3339_CHARS,
    MAX_ZONE_CHARS,
    rfc3339,
)
from console.queries import EventFilter, events, open_by_hub, queue
from console.web import console_of

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
MAX_LIMIT = 1000

router = APIRouter(prefix=PREFIX, tags=["console"], dependencies=[Depends(bearer_scheme)])

Viewer = Annotated[Principal, Depends(viewer)]
Operator = Annotated[Principal, Depends(operator)]
AlertId = Annotated[int, Path(ge=1, le=2**62, description="the alert's id")]
HubId = Annotated[str, Path(pattern=HUB_PATTERN, description="a hub id, as in the config")]
HubFilter = Annotated[str | None, Query(pattern=HUB_PATTERN)]
KindFilter = Annotated[str | None, Query(pattern=KIND_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
Time = Annotated[
    str | None,
    Query(
        max_length=MAX_RFC3339_CHARS,
        description="an RFC 3339 date-time (with its offset), e.g. 2026-03-01T08:00:00+07:00",
        json_schema_extra={"format": "date-time"},
    ),
    AfterValidator(lambda v: None if v is None else rfc3339(v)),
]
OptionalAlertId = Annotated[
    int | None, Query(ge=1, le=2**62, description="the alert this command is for")
]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers an operation documents besides 422 (FastAPI's own): 400 (a body
    that is not JSON), 401, 403, and ``codes``."""
    return {code: {"model": ErrorOut} for code in (400, 401, 403, *codes)}


def _desk(request: Request) -> Desk:
    return console_of(request).desk


@router.get("/alerts", responses=_errors())
def list_alerts(
    request: Request,
    who: Viewer,
    hub: HubFilter = None,
    kind: KindFilter = None,
    state: Literal["new", "acknowledged", "closed"] | None = None,
    zone: Annotated[str | None, Query(max_length=MAX_ZONE_CHARS)] = None,
    outcome: Literal["real", "false_alarm", "test", "other", "restored"] | None = None,
    since: Time = None,
    until: Time = None,
    all: Annotated[bool, Query(description="every alert (history), not only the open")] = False,
    limit: Limit = 100,
    offset: Offset = 0,
) -> AlertList:
    """Open alerts in queue order (priority, new first, newest first); with ``all`` or any
    history filter (zone, outcome, since, until, state closed), every alert, newest opened
    first. ``since``/``until`` bound when the alert opened (``until`` exclusive)."""
    desk = _desk(request)
    history = (
        all or any(v is not None for v in (zone, outcome, since, until)) or (state == "closed")
    )
    if history:
        found = desk.alerts.search(
            hub=hub,
            kind=kind,
            zone=zone,
            since=since,
            until=until,
            outcome=outcome,
            state=state,
            limit=limit,
            offset=offset,
        )
    else:
        found = queue(desk.db, hub=hub, kind=kind, state=state, limit=limit, offset=offset)
    return AlertList(alerts=[AlertOut(**a.to_dict()) for a in found], limit=limit, offset=offset)


@router.get("/alerts/{alert_id}", responses=_errors(404))
def get_alert(request: Request, alert_id: AlertId, who: Viewer) -> AlertDetail:
    """The alert with its events, its audit trail and the commands sent for it."""
    console = console_of(request)
    alert = console.desk.alerts.get(alert_id)
    if alert is None:
        raise HTTPException(404, f"no alert {alert_id}")
    page = gather(console.desk, console.data_dir, alert)
    return AlertDetail(
        alert=AlertOut(**alert.to_dict()),
        events=[EventOut(**e) for e in page.events],
        audit=[AuditOut(**r.to_dict()) for r in page.audit],
        commands=[CommandOut(**c.to_dict()) for c in page.commands],
    )


@router.post("/alerts/{alert_id}/ack", responses=_errors(404, 409, 413))
def acknowledge_alert(request: Request, alert_id: AlertId, who: Operator) -> AlertOut:
    """Acknowledge (stops the escalation); again on an acknowledged alert changes nothing."""
    desk = _desk(request)
    if desk.alerts.get(alert_id) is None:
        raise HTTPException(404, f"no alert {alert_id}")
    try:
        return AlertOut(**desk.acknowledge(alert_id, who.name).to_dict())
    except AlertError as exc:
        raise HTTPException(409, str(exc)) from None


@router.post("/alerts/{alert_id}/close", responses=_errors(404, 409, 413))
def close_alert(request: Request, alert_id: AlertId, body: CloseIn, who: Operator) -> AlertOut:
    """Close with an outcome and a note (also acknowledges a new alert)."""
    desk = _desk(request)
    if desk.alerts.get(alert_id) is None:
        raise HTTPException(404, f"no alert {alert_id}")
    try:
        return AlertOut(**desk.close(alert_id, who.name, body.outcome, body.note).to_dict())
    except AlertError as exc:
        raise HTTPException(409, str(exc)) from None


@router.get("/hubs", responses=_errors())
def list_hubs(request: Request, who: Viewer) -> HubList:
    """Every hub known (expected by the config, or heard), by id."""
    desk = _desk(request)
    urgent = open_by_hub(desk.db)
    views = [hub_view(row, urgent.get(row.hub)) for row in desk.hubs.all()]
    return HubList(hubs=[HubOut(**vars(v)) for v in views])


@router.get("/events", responses=_errors())
def list_events(
    request: Request,
    who: Viewer,
    hub: HubFilter = None,
    kind: KindFilter = None,
    since: Time = None,
    until: Time = None,
    limit: Limit = 100,
) -> EventList:
    """Stored events, newest stored first; ``since``/``until`` bound when the receiver got
    them (``until`` exclusive)."""
    found = events(
        _desk(request).db,
        EventFilter(hub=hub, kind=kind, since=since, until=until, limit=limit),
    )
    return EventList(events=[EventOut(**e) for e in found])


def _send(
    request: Request,
    hub: str,
    name: str,
    args: dict[str, Any],
    who: Principal,
    alert_id: int | None,
) -> CommandOut:
    desk = _desk(request)
    if desk.hubs.get(hub) is None:
        raise HTTPException(404, f"no hub {hub!r} is known")
    if alert_id is not None:
        alert = desk.alerts.get(alert_id)
        if alert is None:
            raise HTTPException(404, f"no alert {alert_id}")
        if alert.hub != hub:
            raise HTTPException(409, f"alert {alert_id} is of hub {alert.hub!r}, not {hub!r}")
    try:
        record = desk.send_command(hub, name, args, who.name, alert_id)
    except CommandSendError as exc:
        log.warning("command %s to %s for %s failed: %s", name, hub, who.name, exc)
        raise HTTPException(502, f"the command could not be sent: {exc}") from None
    return CommandOut(**record.to_dict())


_COMMAND_ERRORS = _errors(404, 409, 413, 502)


@router.post("/hubs/{hub}/commands/silence", responses=_COMMAND_ERRORS)
def silence(
    request: Request,
    hub: HubId,
    who: Operator,
    body: Annotated[NoArgs | None, Body()] = None,
    alert_id: OptionalAlertId = None,
) -> CommandOut:
    """Silence the hub's siren (signed for the operator). The hub's answer comes later: read
    it in the alert's ``commands`` (``result``)."""
    return _send(request, hub, "silence", {}, who, alert_id)


@router.post("/hubs/{hub}/commands/ping", responses=_COMMAND_ERRORS)
def ping(
    request: Request,
    hub: HubId,
    who: Operator,
    body: Annotated[NoArgs | None, Body()] = None,
    alert_id: OptionalAlertId = None,
) -> CommandOut:
    """Ask the hub for a sign of life (its answer carries its clock)."""
    return _send(request, hub, "ping", {}, who, alert_id)


@router.post("/hubs/{hub}/commands/snapshot", responses=_COMMAND_ERRORS)
def snapshot(
    request: Request,
    hub: HubId,
    body: SnapshotArgs,
    who: Operator,
    alert_id: OptionalAlertId = None,
) -> CommandOut:
    """Ask the hub to send a stored camera picture again (``id``: the person event's id)."""
    return _send(request, hub, "snapshot", {"id": body.id}, who, alert_id)
