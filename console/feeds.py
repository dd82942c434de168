"""The live stream of change notices (``/stream``, server-sent events) and the camera
snapshots (``/snapshots/<hub>/<event-id>.jpg``), for anyone logged in."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sse_starlette import EventSourceResponse
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, Response

from console.auth import Principal, viewer
from console.snapshot_files import snapshot_file
from console.streams import PING_S
from console.web import console_of

router = APIRouter(include_in_schema=False)
Viewer = Annotated[Principal, Depends(viewer)]


@router.get("/stream")
async def stream(request: Request, who: Viewer) -> Response:
    notices = console_of(request).notices
    return EventSourceResponse(notices.events(), ping=PING_S, headers={"cache-control": "no-store"})


@router.get("/snapshots/{hub}/{name}")
def snapshot(request: Request, hub: str, name: str, who: Viewer) -> Response:
    event_id = name.removesuffix(".jpg")
    found = (
        snapshot_file(console_of(request).data_dir, hub, event_id)
        if name.endswith(".jpg")
        else None
    )
    if found is None:
        raise HTTPException(404, "no picture")
    return FileResponse(found, media_type="image/jpeg", headers={"cache-control": "private"})
