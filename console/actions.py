"""What an operator does from the pages: acknowledge, close with an outcome and a note, and
send the hub ``silence``, ``snapshot`` (the picture again) or ``ping``.

Each is a form POST (its CSRF token checked by ``console.auth.AuthMiddleware``) that needs the
operator role; the desk audits the action with the operator's name. Success redirects back
(303) with a message; a refusal shows the alert page again with the reason.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Request
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from commune.alerts import MAX_NOTE_CHARS, OUTCOMES, AlertError
from commune.commands import CommandSendError
from commune.snapshots import SNAPSHOT_ID
from console.auth import Principal, operator
from console.labels import PROBLEMS
from console.pages import alert_response
from console.web import console_of, local_path, translate

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)
AlertId = Annotated[int, Path(ge=1, le=2**62)]
Operator = Annotated[Principal, Depends(operator)]
COMMANDS = ("silence", "snapshot", "ping")


def _done(alert_id: int, code: str, next_path: str | None = None) -> Response:
    target = local_path(next_path, f"/alerts/{alert_id}?done={code}")
    return RedirectResponse(target, status_code=303)


def _refused(
    request: Request, alert_id: int, problem: str, exc: Exception, status: int
) -> Response:
    error = f"{translate(request, PROBLEMS[problem])}: {exc}"
    return alert_response(request, alert_id, error=error, status_code=status)


@router.post("/alerts/{alert_id}/ack")
def acknowledge(
    request: Request,
    alert_id: AlertId,
    who: Operator,
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    try:
        console_of(request).desk.acknowledge(alert_id, who.name)
    except AlertError as exc:
        return _refused(request, alert_id, "alert", exc, 409)
    return _done(alert_id, "acknowledged", next or None)


@router.post("/alerts/{alert_id}/close")
def close(
    request: Request,
    alert_id: AlertId,
    who: Operator,
    outcome: Annotated[str, Form(max_length=32)],
    note: Annotated[str, Form(max_length=MAX_NOTE_CHARS)] = "",
) -> Response:
    if outcome not in OUTCOMES:
        return _refused(request, alert_id, "input", ValueError(f"outcome {outcome!r}"), 400)
    try:
        console_of(request).desk.close(alert_id, who.name, outcome, note.strip())
    except AlertError as exc:
        return _refused(request, alert_id, "alert", exc, 409)
    return _done(alert_id, "closed")


@router.post("/alerts/{alert_id}/commands/{name}")
def command(
    request: Request,
    alert_id: AlertId,
    name: Annotated[str, Path(max_length=16)],
    who: Operator,
    event_id: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    console = console_of(request)
    alert = console.desk.alerts.get(alert_id)
    if alert is None:
        raise HTTPException(404, f"no alert {alert_id}")
    if name not in COMMANDS:
        raise HTTPException(404, f"no command {name!r}: one of {', '.join(COMMANDS)}")
    args: dict[str, Any] = {}
    if name == "snapshot":
        if not SNAPSHOT_ID.fullmatch(event_id):
            return _refused(request, alert_id, "input", ValueError("event_id"), 400)
        args = {"id": event_id}
    try:
        console.desk.send_command(alert.hub, name, args, who.name, alert_id)
    except CommandSendError as exc:
        log.warning("command %s to %s for %s failed: %s", name, alert.hub, who.name, exc)
        return _refused(request, alert_id, "send", exc, 502)
    return _done(alert_id, "sent")
