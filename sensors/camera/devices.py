"""Live cameras: frames come at the device's own pace, and ``read`` waits for the next one.

``PiCameraSource``: a Raspberry Pi camera through picamera2, with the low-resolution stream
motion detection reads. ``OpenCVSource``: a USB (V4L2) or network camera (RTSP, HTTP MJPEG)
through OpenCV, whose reader thread keeps only the newest frame.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from sensors.camera.frames import Frame, SourceError, opencv
from settings.cameras import redact_url

log = logging.getLogger(__name__)

# FFmpeg options for network streams: RTSP over TCP (no smeared frames from lost UDP packets)
# and a short stream probe, so that opening takes well under a second instead of five.
STREAM_OPTIONS = "rtsp_transport;tcp|analyzeduration;1000000|probesize;1000000"
_FFMPEG_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_ENV_LOCK = threading.Lock()  # the options reach OpenCV through the process environment


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
        self.description = f"usb:{target}" if isinstance(target, int) else redact_url(str(target))
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
        cv2 = opencv()
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
        cv2 = opencv()
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
