"""The pages one reads: the live queue, an alert, the hubs board and map, the history and its
CSV. Every page needs a login (a viewer may read everything); the actions are in
``console.actions``."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response, StreamingResponse

from commune.alerts import MAX_NOTE_CHARS, OUTCOMES, STATES, Alert
from console.alert_view import gather, page_context
from console.auth import Principal, viewer
from console.csv_export import rows_csv
from console.hub_map import HEIGHT, WIDTH, place
from console.hub_view import hub_view
from console.labels import DONE
from console.labels import KINDS as KIND_LABELS
from console.params import ALL_OUTCOMES, AlertSearch, BadParameter, alert_search
from console.queries import hub_choices, hub_names, open_by_hub, queue
from console.web import console_of, render, translate
from core.events import KINDS, Priority

router = APIRouter(include_in_schema=False)
HISTORY_PAGE = 50
MAX_PAGE = 10_000
AlertId = Annotated[int, Path(ge=1, le=2**62)]
Field = Annotated[str, Query(max_length=64)]
Viewer = Annotated[Principal, Depends(viewer)]


def kind_choices() -> list[str]:
    alerting = [k for k, v in KINDS.items() if v.priority < Priority.TELEMETRY]
    return alerting + [k for k in KIND_LABELS if k not in KINDS]


@router.get("/")
def queue_page(request: Request, who: Viewer) -> Response:
    desk = console_of(request).desk
    alerts = queue(desk.db, limit=500)
    return render(
        request,
        "queue.html",
        {
            "alerts": alerts,
            "counts": desk.alerts.counts(),
            "hub_names": hub_names(desk.db, (a.hub for a in alerts)),
        },
    )


@router.get("/alerts/{alert_id}")
def alert_page(
    request: Request,
    alert_id: AlertId,
    who: Viewer,
    done: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    message = translate(request, DONE[done]) if done in DONE else None
    return alert_response(request, alert_id, message=message)


def alert_response(
    request: Request,
    alert_id: int,
    *,
    message: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    """The alert page (also after an action, with its message or error)."""
    console = console_of(request)
    alert = console.desk.alerts.get(alert_id)
    if alert is None:
        raise HTTPException(404, f"no alert {alert_id}")
    context = page_context(gather(console.desk, console.data_dir, alert))
    context.update(outcomes=OUTCOMES, max_note=MAX_NOTE_CHARS, message=message, error=error)
    return render(request, "alert.html", context, status_code)


@router.get("/hubs")
def hubs_page(request: Request, who: Viewer) -> Response:
    desk = console_of(request).desk
    urgent = open_by_hub(desk.db)
    views = [hub_view(row, urgent.get(row.hub)) for row in desk.hubs.all()]
    dots, elsewhere = place(views)
    return render(
        request,
        "hubs.html",
        {"hubs": views, "dots": dots, "elsewhere": elsewhere, "width": WIDTH, "height": HEIGHT},
    )


def _search_form(
    hub: str, kind: str, zone: str, since: str, until: str, outcome: str, state: str
) -> dict[str, str]:
    return {
        "hub": hub,
        "kind": kind,
        "zone": zone,
        "since": since,
        "until": until,
        "outcome": outcome,
        "state": state,
    }


@router.get("/history")
def history_page(
    request: Request,
    who: Viewer,
    hub: Field = "",
    kind: Field = "",
    zone: Field = "",
    since: Field = "",
    until: Field = "",
    outcome: Field = "",
    state: Field = "",
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
) -> Response:
    desk = console_of(request).desk
    form = _search_form(hub, kind, zone, since, until, outcome, state)
    context = {
        "form": form,
        "query": urlencode({k: v for k, v in form.items() if v}),
        "hub_choices": hub_choices(desk.db),
        "kind_choices": kind_choices(),
        "outcome_choices": ALL_OUTCOMES,
        "state_choices": STATES,
        "page": page,
        "alerts": [],
        "more": False,
    }
    try:
        search = alert_search(**form)
    except BadParameter as exc:
        return render(request, "history.html", {**context, "error": str(exc)}, 400)
    found = desk.alerts.search(
        **search.as_kwargs(), limit=HISTORY_PAGE + 1, offset=(page - 1) * HISTORY_PAGE
    )
    context.update(alerts=found[:HISTORY_PAGE], more=len(found) > HISTORY_PAGE)
    return render(request, "history.html", context)


@router.get("/history.csv")
def history_csv(
    request: Request,
    who: Viewer,
    hub: Field = "",
    kind: Field = "",
    zone: Field = "",
    since: Field = "",
    until: Field = "",
    outcome: Field = "",
    state: Field = "",
) -> Response:
    try:
        search: AlertSearch = alert_search(
            **_search_form(hub, kind, zone, since, until, outcome, state)
        )
    except BadParameter as exc:
        raise HTTPException(400, str(exc)) from None
    alerts = console_of(request).desk.alerts

    def page(limit: int, offset: int) -> list[Alert]:
        return alerts.search(**search.as_kwargs(), limit=limit, offset=offset)

    return StreamingResponse(
        rows_csv(page),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="tuquan-alerts.csv"'},
    )
