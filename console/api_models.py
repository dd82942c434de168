"""The JSON shapes of ``/api/v1`` (pydantic): what the OpenAPI document promises and every
response is checked against."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from commune.alerts import MAX_NOTE_CHARS
from console.params import EVENT_ID_PATTERN


class ErrorOut(BaseModel):
    detail: str = Field(description="what was wrong, naming the field")


class AlertOut(BaseModel):
    id: int
    hub: str
    kind: str
    zone: str
    cid: int
    priority: int = Field(description="0 alarm, 1 trouble, 2 detection")
    origin: str = Field(description='"hub", or "receiver" for supervision troubles')
    state: Literal["new", "acknowledged", "closed"]
    opened_at: str
    first_event_id: str
    last_event_at: str
    events: int
    trouble_key: str | None
    ack_by: str | None
    ack_at: str | None
    closed_by: str | None
    closed_at: str | None
    outcome: str | None
    note: str | None


class AlertList(BaseModel):
    alerts: list[AlertOut]
    limit: int
    offset: int


class EventOut(BaseModel):
    id: str
    hub: str
    commune: str
    seq: int
    kind: str
    priority: int
    zone: str
    source: str
    ts: str = Field(description="the hub's clock (see clock_synced)")
    clock_synced: bool
    cid: int
    qualifier: str = Field(description='"E" new, "R" restore')
    data: Any
    received_at: str = Field(description="the receiver's clock")
    verified: bool | None = Field(description="signature checked: true; no key enrolled: null")


class EventList(BaseModel):
    events: list[EventOut]


class AuditOut(BaseModel):
    id: int
    at: str
    actor: str
    action: str
    alert_id: int | None
    hub: str | None
    detail: dict[str, Any]


class CommandOut(BaseModel):
    id: str
    hub: str
    name: str
    args: dict[str, Any]
    operator: str
    alert_id: int | None
    sent_at: str
    result: dict[str, Any] | None = Field(description="the hub's cmd_result, once it came")
    result_at: str | None
    ok: bool | None


class AlertDetail(BaseModel):
    alert: AlertOut
    events: list[EventOut]
    audit: list[AuditOut]
    commands: list[CommandOut]


class HubOut(BaseModel):
    hub: str
    expected: bool
    name: str
    place: str
    contact: str
    latitude: float | None
    longitude: float | None
    status: Literal["online", "offline", "unknown", "never"]
    last_seen_at: str | None
    pending: int | None = Field(description="events waiting in the hub's outbox")
    undelivered_alarms: int | None
    backlog_since: str | None
    unsynced_since: str | None
    battery_mv: int | None = Field(description="the lowest battery of its sensor nodes")
    cameras: dict[str, str]
    inputs: dict[str, str]
    nodes: list[str]
    health_verified: bool | None
    open_priority: int | None = Field(description="its most urgent open alert's priority")


class HubList(BaseModel):
    hubs: list[HubOut]


class CloseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["real", "false_alarm", "test", "other"]
    note: Annotated[str, Field(max_length=MAX_NOTE_CHARS)] = ""


class NoArgs(BaseModel):
    """``silence`` and ``ping`` take no arguments."""

    model_config = ConfigDict(extra="forbid")


class SnapshotArgs(BaseModel):
    """``snapshot``: the id of the event whose picture the hub sends again."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(pattern=EVENT_ID_PATTERN)]
