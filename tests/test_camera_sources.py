"""Frame sources: video files and picture folders through OpenCV, a real RTSP camera on
loopback (GStreamer's RTSP server), and losing and finding a stream again (camera_offline)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from camera_scenes import FakeClock, noisy, street, write_avi, write_jpegs

from core.events import Event
from sensors.camera.pipeline import CameraPipeline
from sensors.camera.sources import (
    EndOfStream,
    FileSource,
    Frame,
    FrameSource,
    ImageFolderSource,
    OpenCVSource,
    SourceError,
    make_source,
)
from settings.cameras import CameraConfig, TamperConfig
from settings.cameras import redact_url as redact
from testkit.broker import free_port

SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER = Path(__file__).with_name("rtsp_server.py")


def numbered_frames(n: int, width: int = 160, height: int = 120) -> list[np.ndarray]:
    """Frames told apart by their brightness: frame i is (20 + 20 i) % 240 grey, plus a mark."""
    frames = []
    for i in range(n):
        f = np.full((height, width, 3), (20 + 20 * i) % 240, np.uint8)
        cv2.rectangle(f, (10, 10), (40, 40), (255, 0, 0), -1)  # red top left: RGB order kept
        frames.append(f)
    return frames


def level(frame: Frame) -> float:
    return float(frame.image[60:, 60:].mean())


def test_file_source_plays_an_avi_at_the_clock_pace(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    write_avi(str(path), numbered_frames(10), fps=5.0)
    clock = FakeClock()
    src = FileSource(path, clock=clock)
    src.open()
    first = src.read()
    assert first is not None and first.size == (160, 120)
    r, g, b = first.image[25, 25]
    assert r > 200 and g < 60 and b < 60, "frames come as RGB"
    assert abs(level(first) - 20) < 6
    clock.sleep(0.2)  # one frame of a 5 fps clip later
    second = src.read()
    assert second is not None and abs(level(second) - 40) < 6
    clock.sleep(0.6)  # three frames later: two are skipped
    fifth = src.read()
    assert fifth is not None and abs(level(fifth) - 100) < 6
    same = src.read()  # the clock did not move: the same picture again
    assert same is not None and abs(level(same) - 100) < 6
    clock.sleep(5.0)
    with pytest.raises(EndOfStream):
        src.read()
    src.close()


def test_file_source_loops_and_a_missing_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    write_avi(str(path), numbered_frames(3), fps=5.0)
    clock = FakeClock()
    src = FileSource(path, loop=True, clock=clock)
    src.open()
    levels = []
    for _ in range(7):
        frame = src.read()
        assert frame is not None
        levels.append(round(level(frame) / 20))
        clock.sleep(0.2)
    assert levels == [1, 2, 3, 1, 2, 3, 1]
    src.close()
    path.unlink()
    with pytest.raises(SourceError, match="no such file"):
        src.open()
    (tmp_path / "bad.avi").write_bytes(b"not a video at all")
    with pytest.raises(SourceError, match="cannot be read"):
        FileSource(tmp_path / "bad.avi").open()


def test_image_folder_source(tmp_path: Path) -> None:
    write_jpegs(str(tmp_path), numbered_frames(4))
    (tmp_path / "notes.txt").write_text("not a picture")
    clock = FakeClock()
    src = ImageFolderSource(tmp_path, fps=5.0, loop=True, clock=clock)
    src.open()
    levels = []
    for _ in range(6):
        frame = src.read()
        assert frame is not None
        levels.append(round(level(frame) / 20))
        clock.sleep(0.2)
    assert levels == [1, 2, 3, 4, 1, 2]
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no pictures"):
        ImageFolderSource(tmp_path / "empty").open()
    with pytest.raises(SourceError, match="No such file"):
        ImageFolderSource(tmp_path / "missing").open()
    once = ImageFolderSource(tmp_path, fps=5.0, clock=clock)
    once.open()
    for _ in range(4):
        assert once.read() is not None
        clock.sleep(0.2)
    with pytest.raises(EndOfStream):
        once.read()


def test_sources_from_settings_and_redacted_urls(tmp_path: Path) -> None:
    def kind(source: str) -> type:
        return type(make_source(CameraConfig(name="c", source=source)))

    assert kind("rtsp://user:pw@10.0.0.5:554/stream1") is OpenCVSource
    assert kind("/dev/video0") is OpenCVSource
    assert kind("usb:1") is OpenCVSource
    assert kind(str(tmp_path)) is ImageFolderSource
    assert kind(str(tmp_path / "x.mp4")) is FileSource
    assert kind("picamera").__name__ == "PiCameraSource"
    src = make_source(CameraConfig(name="c", source="rtsp://admin:s3cret@cam.local/live"))
    assert src.description == "rtsp://***@cam.local/live"
    assert redact("http://cam/mjpg") == "http://cam/mjpg"
    assert isinstance(src, FrameSource)


def still_settings(name: str, source: str, **kw: object) -> CameraConfig:
    """A camera that only watches its stream (no tamper, so a restarted clip is no event)."""
    return CameraConfig(
        name=name,
        source=source,
        tamper=TamperConfig(enabled=False),
        **kw,  # type: ignore[arg-type]
    )


def test_a_file_that_disappears_is_one_offline_trouble_and_one_restore(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    rng = np.random.default_rng(3)
    bg = street(160, 120)
    write_avi(str(path), [noisy(bg, rng) for _ in range(10)], fps=5.0)
    kept = tmp_path / "kept.avi"
    shutil.copy(path, kept)

    clock = FakeClock()
    events: list[Event] = []
    settings = still_settings(
        "gate",
        str(path),
        loop=True,
        zone="gate-post",
        offline_after_s=3.0,
        backoff_min_s=0.5,
        backoff_max_s=4.0,
    )
    pipe = CameraPipeline(
        settings, emit=events.append, clock=clock, sleep=clock.sleep, jitter=lambda: 0.5
    )
    clock.at(1.0, path.unlink)  # the clip plays to its end (2 s), then cannot be reopened
    clock.at(30.0, lambda: shutil.copy(kept, path))
    clock.at(40.0, pipe.stop)
    pipe.run()

    kinds = [(e.kind, e.qualifier) for e in events]
    assert kinds == [("camera_offline", "E"), ("camera_offline", "R")]
    lost, back = events
    assert lost.zone == "gate-post" and lost.source == "gate"
    assert "no such file" in lost.data["error"] and lost.data["camera"] == "gate"
    assert 25.0 < back.data["down_s"] < 33.0
    assert pipe.stats.open_failures >= 4, "retried while the file was gone"
    assert pipe.stats.open_failures <= 12, "with backoff, not in a tight loop"


def test_a_short_loss_reports_nothing(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    write_avi(str(path), numbered_frames(10), fps=5.0)
    kept = tmp_path / "kept.avi"
    shutil.copy(path, kept)
    clock = FakeClock()
    events: list[Event] = []
    settings = still_settings("gate", str(path), loop=True, offline_after_s=10.0, backoff_min_s=0.5)
    pipe = CameraPipeline(settings, emit=events.append, clock=clock, sleep=clock.sleep)
    clock.at(1.0, path.unlink)
    clock.at(5.0, lambda: shutil.copy(kept, path))
    clock.at(15.0, pipe.stop)
    pipe.run()
    assert events == []
    assert pipe.stats.losses == 1 and pipe.stats.opens >= 2


# -- a real RTSP camera on loopback -----------------------------------------------------------


def gstreamer_missing() -> str | None:
    """Why the RTSP server cannot run here, or None."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found"
    probe = subprocess.run(
        [
            SYSTEM_PYTHON,
            "-c",
            "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer',"
            " '1.0'); from gi.repository import Gst, GstRtspServer; Gst.init(None);"
            " assert Gst.ElementFactory.find('rtpjpegpay') and Gst.ElementFactory.find('jpegenc')",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode:
        return (
            "GStreamer's RTSP server is not installed for the system Python (scripts/setup.sh "
            "installs gir1.2-gst-rtsp-server-1.0 python3-gst-1.0 gstreamer1.0-plugins-good "
            f"gstreamer1.0-plugins-base): {probe.stderr.strip().splitlines()[-1:]}"
        )
    return None


class RtspServer:
    """tests/rtsp_server.py in its own process, serving a folder of JPEGs on a loopback port."""

    def __init__(self, frames: Path, port: int) -> None:
        self.frames, self.port = frames, port
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                SYSTEM_PYTHON,
                str(RTSP_SERVER),
                "--port",
                str(self.port),
                "--frames",
                str(self.frames),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"RTSP server did not start: {line!r} {err}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdout, proc.stderr):
                if pipe:
                    pipe.close()


@pytest.fixture
def rtsp_server(tmp_path: Path) -> Iterator[RtspServer]:
    why = gstreamer_missing()
    if why:
        pytest.skip(why)
    frames = tmp_path / "frames"
    frames.mkdir()
    write_jpegs(str(frames), numbered_frames(10, 320, 240))
    server = RtspServer(frames, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_opencv_has_ffmpeg_for_rtsp() -> None:
    info = cv2.getBuildInformation()
    ffmpeg = [line for line in info.splitlines() if line.strip().startswith("FFMPEG:")]
    assert ffmpeg and "YES" in ffmpeg[0], info


def test_rtsp_camera_frames_come_through_opencv(rtsp_server: RtspServer) -> None:
    src = OpenCVSource(rtsp_server.url, open_timeout_s=5.0, read_timeout_s=3.0)
    src.open()
    try:
        assert src.live
        seen = set()
        for _ in range(15):
            frame = src.read()
            assert frame is not None and frame.size == (320, 240)
            r, g, b = frame.image[25, 25]
            assert r > 180 and g < 80 and b < 80, "RGB order through RTSP too"
            seen.add(round(float(frame.image[120:, 120:].mean()) / 20))
        assert len(seen) >= 5, f"the folder's frames go round: {sorted(seen)}"
    finally:
        src.close()


def test_rtsp_server_restart_is_one_offline_trouble_and_one_restore(
    rtsp_server: RtspServer,
) -> None:
    events: list[Event] = []
    settings = still_settings(
        "street",
        rtsp_server.url,
        offline_after_s=0.0,
        open_timeout_s=3.0,
        read_timeout_s=2.0,
        backoff_min_s=0.3,
        backoff_max_s=1.0,
    )
    pipe = CameraPipeline(settings, emit=events.append)
    pipe.start()
    try:
        wait_for(lambda: pipe.stats.frames >= 3, 20, "frames from the RTSP camera")
        rtsp_server.stop()
        wait_for(lambda: len(events) >= 1, 20, "camera_offline")
        assert [(e.kind, e.qualifier) for e in events] == [("camera_offline", "E")]
        assert events[0].data["source"] == rtsp_server.url
        time.sleep(1.5)  # several reopen attempts fail while the server is down
        assert len(events) == 1, "one trouble, not one per retry"
        rtsp_server.start()
        wait_for(lambda: len(events) >= 2, 30, "camera_offline restore")
        frames_back = pipe.stats.frames
        wait_for(lambda: pipe.stats.frames > frames_back + 2, 20, "frames after the restart")
    finally:
        pipe.stop()
    assert [(e.kind, e.qualifier) for e in events] == [
        ("camera_offline", "E"),
        ("camera_offline", "R"),
    ]
    assert pipe.stats.open_failures >= 2 and pipe.stats.losses == 1
