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

picamera2 and OpenCV are imported when a source opens, never before.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from core.errors import TuquanError
from sensors.camera.settings import CameraSettings

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

# FFmpeg options for network streams: RTSP over TCP (no smeared frames from lost UDP packets)
# and a short stream probe, so that opening takes well under a second instead of five.
STREAM_OPTIONS = "rtsp_transport;tcp|analyzeduration;1000000|probesize;1000000"
_FFMPEG_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_ENV_LOCK = threading.Lock()  # the options reach OpenCV through the process environment


class SourceError(TuquanError):
    """A camera or stream cannot be opened, or was lost."""


class EndOfStream(SourceError):
    """A file or folder source without ``loop`` has no more frames."""


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # H x W x 3 uint8, RGB
    ts: float  # seconds on the pipeline's clock (time.monotonic unless one is injected)
    gray: np.ndarray | None = None  # optional small grayscale copy from the camera

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)"""
        return int(self.image.shape[1]), int(self.image.shape[0])


@runtime_checkable
class FrameSource(Protocol):
    """What the pipeline needs from a camera (see the module's docstring)."""

    live: bool
    description: str  # for logs and events; never holds a password

    def open(self) -> None: ...

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


def redact(url: str) -> str:
    """``rtsp://user:secret@host/...`` -> ``rtsp://***@host/...``"""
    return re.sub(r"(?<=//)[^/@]*@", "***@", url)


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - a hub installed without camera support
        raise SourceError(
            "OpenCV is not installed (pip install opencv-python-headless): "
            "cameras other than Pi cameras need it"
        ) from exc
    return cv2


# -- Raspberry Pi cameras -----------------------------------------------------------------------


class PiCameraSource:
    """A Raspberry Pi camera through picamera2 (libcamera): the main stream (RGB) for detection
    and snapshots, and a low-resolution YUV420 stream whose Y plane feeds motion detection."""

    live = True

    def __init__(
        self,
        index: int = 0,
        *,
        width: int = 1280,
        height: int = 720,
        fps: float = 5.0,
        lores_width: int = 320,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.index = index
        self.size = (width - width % 2, height - height % 2)
        lores_h = round(lores_width * height / width)
        self.lores = (lores_width - lores_width % 2, lores_h - lores_h % 2)
        self.fps = fps
        self.clock = clock
        self.description = f"picamera:{index}"
        self._cam: Any = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise SourceError(
                "picamera2 is not installed (Raspberry Pi OS: apt install python3-picamera2)"
            ) from exc
        try:
            cam = Picamera2(self.index)
            config = cam.create_video_configuration(
                # picamera2's "BGR888" is stored R, G, B: the RGB array the detector wants.
                main={"size": self.size, "format": "BGR888"},
                lores={"size": self.lores, "format": "YUV420"},
                controls={"FrameRate": float(self.fps)},
                buffer_count=4,
            )
            cam.configure(config)
            cam.start()
        except Exception as exc:
            raise SourceError(f"cannot start Pi camera {self.index}: {exc}") from exc
        self._cam = cam

    def read(self) -> Frame | None:
        if self._cam is None:
            raise SourceError("Pi camera is not open")
        try:
            request = self._cam.capture_request()
            try:
                main = request.make_array("main")
                lores = request.make_array("lores")
            finally:
                request.release()
        except Exception as exc:
            raise SourceError(f"Pi camera {self.index} stopped: {exc}") from exc
        w, h = self.lores
        return Frame(image=main[:, :, :3].copy(), ts=self.clock(), gray=lores[:h, :w].copy())

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            try:
                cam.stop()
            finally:
                cam.close()


# -- USB and IP cameras (OpenCV) ----------------------------------------------------------------


class OpenCVSource:
    """A USB (V4L2) or network camera (RTSP, HTTP MJPEG) read through OpenCV.

    A reader thread takes every frame the camera sends and keeps only the newest, so a slow
    pipeline never works on stale pictures and the stream's buffers never fill. A stream that
    sends nothing for ``read_timeout_s`` is lost (OpenCV's FFmpeg read timeout); one that
    cannot be opened within ``open_timeout_s`` fails to open.
    """

    live = True

    def __init__(
        self,
        target: str | int,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        ffmpeg_options: str = STREAM_OPTIONS,
    ) -> None:
        self.target = target
        self.usb = isinstance(target, int) or str(target).startswith("/dev/")
        self.width, self.height, self.fps = width, height, fps
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.clock = clock
        self.ffmpeg_options = ffmpeg_options
        self.description = f"usb:{target}" if isinstance(target, int) else redact(str(target))
        self._cond = threading.Condition()
        self._latest: Any = None
        self._latest_ts = 0.0
        self._seq = 0
        self._taken = 0
        self._error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        self.close()
        cv2 = _cv2()
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self.read_timeout_s * 1000),
        ]
        if self.usb:
            cap = cv2.VideoCapture(self.target, cv2.CAP_V4L2)
            if self.width and self.height:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            if self.fps:
                cap.set(cv2.CAP_PROP_FPS, self.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        else:
            with _ENV_LOCK:
                # The caller's own FFmpeg options win over ours.
                set_here = _FFMPEG_ENV not in os.environ
                if set_here:
                    os.environ[_FFMPEG_ENV] = self.ffmpeg_options
                try:
                    cap = cv2.VideoCapture(str(self.target), cv2.CAP_FFMPEG, params)
                finally:
                    if set_here:
                        os.environ.pop(_FFMPEG_ENV, None)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.description}")
        ok, bgr = cap.read()
        if not ok or bgr is None:
            cap.release()
            raise SourceError(f"{self.description} opened but sent no frame")
        with self._cond:
            self._latest, self._latest_ts = bgr, self.clock()
            self._seq, self._taken, self._error = 1, 0, None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._reader,
            args=(cap, self._stop),
            name=f"camera-reader {self.description}",
            daemon=True,
        )
        self._thread.start()

    def _reader(self, cap: Any, stop: threading.Event) -> None:
        """Reader thread: keep the newest frame; note why the stream ended."""
        try:
            while not stop.is_set():
                ok, bgr = cap.read()
                if stop.is_set():
                    break
                with self._cond:
                    if not ok or bgr is None:
                        self._error = f"{self.description}: the stream stopped"
                        self._cond.notify_all()
                        break
                    self._latest, self._latest_ts = bgr, self.clock()
                    self._seq += 1
                    self._cond.notify_all()
        except Exception as exc:  # an OpenCV error must end only this stream
            with self._cond:
                self._error = f"{self.description}: {exc}"
                self._cond.notify_all()
        finally:
            cap.release()

    def read(self) -> Frame | None:
        if self._thread is None:
            raise SourceError(f"{self.description} is not open")
        with self._cond:
            self._cond.wait_for(
                lambda: self._seq > self._taken or self._error is not None,
                timeout=self.read_timeout_s,
            )
            if self._seq > self._taken:
                bgr, ts = self._latest, self._latest_ts
                self._taken = self._seq
            elif self._error is not None:
                raise SourceError(self._error)
            else:
                return None
        cv2 = _cv2()
        return Frame(image=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), ts=ts)

    def close(self) -> None:
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            # The reader may sit in a read for up to the read timeout; it releases the stream.
            thread.join(self.read_timeout_s + 1.0)
            if thread.is_alive():
                log.warning("%s: reader thread still busy after close", self.description)
        with self._cond:
            self._latest = None


# -- files and folders ------------------------------------------------------------------------


class _ClockedSource:
    """Frame ``n`` of a clip is due ``n / fps`` seconds after the first read."""

    live = False
    description = ""

    def __init__(self, fps: float, loop: bool, clock: Callable[[], float]) -> None:
        self.fps = fps
        self.loop = loop
        self.clock = clock
        self._t0: float | None = None
        self._index = -1
        self._last: np.ndarray | None = None

    def _due(self, now: float) -> int:
        if self._t0 is None:
            self._t0 = now
        return max(0, round((now - self._t0) * self.fps))

    def read(self) -> Frame | None:
        now = self.clock()
        want = self._due(now)
        if want <= self._index and self._last is not None:
            return Frame(image=self._last, ts=now)  # the clip is slower than the reads
        image = self._advance(want)
        if image is None:
            if not self.loop:
                raise EndOfStream(f"{self.description}: end of clip")
            self._restart()
            self._t0, self._index = now, -1
            image = self._advance(0)
            if image is None:
                raise SourceError(f"{self.description}: no frames")
        self._last = image
        return Frame(image=image, ts=now)

    def _advance(self, want: int) -> np.ndarray | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _restart(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _reset_clock(self) -> None:
        self._t0, self._index, self._last = None, -1, None


class FileSource(_ClockedSource):
    """A video file (anything FFmpeg reads), on demand, optionally looping. Looping opens the
    file again, so a file that has gone away is a lost source."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        loop: bool = False,
        fps: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(fps or 0.0, loop, clock)
        self.path = Path(path)
        self.fixed_fps = fps
        self.description = f"file:{self.path}"
        self._cap: Any = None

    def open(self) -> None:
        self.close()
        self._open_capture()
        self._reset_clock()

    def _open_capture(self) -> None:
        cv2 = _cv2()
        if not self.path.is_file():
            raise SourceError(f"{self.description}: no such file")
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.description}: cannot be read as video")
        self.fps = self.fixed_fps or float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 5.0
        self._cap = cap

    def _advance(self, want: int) -> np.ndarray | None:
        if self._cap is None:
            raise SourceError(f"{self.description} is not open")
        cv2 = _cv2()
        while self._index < want - 1:  # skip frames the clock has passed
            if not self._cap.grab():
                return None
            self._index += 1
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            return None
        self._index += 1
        rgb: np.ndarray = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return rgb

    def _restart(self) -> None:
        self.close()
        self._open_capture()

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


class ImageFolderSource(_ClockedSource):
    """A folder of pictures (JPEG, PNG, BMP) in name order, ``fps`` per second, optionally
    looping. The folder is listed again at each loop."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        fps: float = 5.0,
        loop: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(fps, loop, clock)
        self.folder = Path(folder)
        self.description = f"images:{self.folder}"
        self._files: list[Path] = []

    def open(self) -> None:
        self._list()
        self._reset_clock()

    def _list(self) -> None:
        try:
            files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        except OSError as exc:
            raise SourceError(f"{self.description}: {exc.strerror or exc}") from exc
        if not files:
            raise SourceError(f"{self.description}: no pictures")
        self._files = files

    def _advance(self, want: int) -> np.ndarray | None:
        if want >= len(self._files):
            return None
        cv2 = _cv2()
        bgr = cv2.imread(str(self._files[want]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SourceError(f"{self.description}: cannot read {self._files[want].name}")
        self._index = want
        rgb: np.ndarray = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return rgb

    def _restart(self) -> None:
        self._list()

    def close(self) -> None:
        self._files = []


# -- from settings ----------------------------------------------------------------------------


def make_source(
    settings: CameraSettings, *, clock: Callable[[], float] = time.monotonic
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
