"""On-demand sources: ``read`` makes the frame due now. Files and picture folders follow the
clock they are given, so a 25 fps clip read 5 times a second plays in real time, and a test's
fake clock plays it as fast as the test likes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sensors.camera.frames import EndOfStream, Frame, SourceError, opencv

if TYPE_CHECKING:
    import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class ClockedSource:
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


class FileSource(ClockedSource):
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
        cv2 = opencv()
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
        cv2 = opencv()
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


class ImageFolderSource(ClockedSource):
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
        cv2 = opencv()
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
