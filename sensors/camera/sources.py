"""Where frames come from: Raspberry Pi cameras, USB and IP cameras, files, or anything else that
implements ``FrameSource`` (the simulator's virtual camera).

A frame is an RGB ``uint8`` array (H x W x 3) with the time it was taken (seconds on the
pipeline's monotonic clock), and optionally a small grayscale copy made by the camera itself
(a Pi camera's low-resolution YUV stream) that motion detection uses instead of scaling the
frame down.

Two kinds of source:

* live (``live = True``): frames come at the device's own pace and ``read`` waits for the
  next one (picamera2, USB, RTSP). The pipeline drops what it does not need.
* on demand (``live = False``): ``read`` makes the frame due now (files, folders, virtual
  cameras). The pipeline calls it at its detect rate. Files follow the clock the source is
  given, so a 25 fps clip read 5 times a second plays in real time (and a test's fake clock
  plays it as fast as the test likes).

``open`` raises ``SourceError`` when the device or stream cannot be opened; ``read`` raises it
when the stream is lost, ``EndOfStream`` when a file without ``loop`` is over, and returns
``None`` when no frame came in time. A source can be opened again after ``close``.

picamera2 and OpenCV are imported when a source opens, never before. The live sources are in
``devices.py``, the on-demand ones in ``clips.py``, the frame, the protocol and the errors in
``frames.py``; ``make_source`` here picks one from a camera's settings.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sensors.camera.clips import FileSource, ImageFolderSource
from sensors.camera.devices import OpenCVSource, PiCameraSource
from sensors.camera.frames import EndOfStream, Frame, FrameSource, SourceError
from settings.cameras import CameraConfig


def make_source(
    settings: CameraConfig, *, clock: Callable[[], float] = time.monotonic
) -> FrameSource:
    """The source a camera's settings describe."""
    kind = settings.source_kind
    src = settings.source
    if kind == "picamera":
        index = int(src.split(":", 1)[1]) if ":" in src else 0
        return PiCameraSource(
            index,
            width=settings.width or 1280,
            height=settings.height or 720,
            fps=settings.detect_fps,
            clock=clock,
        )
    if kind in ("usb", "stream"):
        target: str | int = src
        if kind == "usb" and (src.startswith("usb:") or src.isdigit()):
            target = int(src.removeprefix("usb:"))
        return OpenCVSource(
            target,
            width=settings.width,
            height=settings.height,
            fps=settings.detect_fps if kind == "usb" else None,
            open_timeout_s=settings.open_timeout_s,
            read_timeout_s=settings.read_timeout_s,
            clock=clock,
        )
    if kind == "images":
        return ImageFolderSource(src, fps=settings.detect_fps, loop=settings.loop, clock=clock)
    return FileSource(src, loop=settings.loop, clock=clock)


__all__ = [
    "EndOfStream",
    "FileSource",
    "Frame",
    "FrameSource",
    "ImageFolderSource",
    "OpenCVSource",
    "PiCameraSource",
    "SourceError",
    "make_source",
]
