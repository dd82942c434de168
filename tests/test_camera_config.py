"""Camera configuration: ``[detection]``, ``[snapshots]`` and ``[[cameras]]`` with their zones,
masks, filters, motion and tamper tables: the models the camera pipeline reads.

A value the settings refuse is an error at its key; invalid files are checked through the real
``check-config`` command, as an installer runs it.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from core.errors import ConfigError
from settings import SNAPSHOT_MB, Config, load_config, parse_config
from settings.cameras import (
    CameraConfig,
    FilterConfig,
    MotionConfig,
    TamperConfig,
    ZoneConfig,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "systemd" / "hub.example.toml"

HUB = """
[hub]
id = "gate-1"
commune = "phuong-1"
"""

CAMERA = """
[[cameras]]
name = "cam-1"
source = "rtsp://viewer:s3cret@192.0.2.7/stream2"
"""

ZONE = """
[[cameras.zones]]
name = "gate"
polygon = [[0.1, 0.4], [0.9, 0.4], [0.9, 1.0], [0.1, 1.0]]
armed = ["22:00-06:00"]
"""


def parse(text: str, tmp_path: Path) -> Config:
    return parse_config(tomllib.loads(text), base_dir=tmp_path, env={})


def errors_of(text: str, tmp_path: Path) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse(text, tmp_path)
    return info.value.errors


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TUQUAN_BROKER_PASSWORD"}
    return subprocess.run(
        [sys.executable, "-m", "tuquan", "check-config", str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )


# -- valid files ------------------------------------------------------------------------------


def test_a_hub_without_cameras_has_none_and_the_defaults() -> None:
    cfg = parse(HUB, Path("."))
    assert cfg.cameras == ()
    assert (cfg.detection.model, cfg.detection.threads, cfg.detection.min_score) == (
        "pose-detection",
        2,
        None,
    )
    assert cfg.detection.models_dir is None
    assert cfg.snapshots.max_mb == 200.0 and cfg.snapshots.max_bytes == 200 * SNAPSHOT_MB


def test_a_camera_with_only_a_name_and_source_has_the_settings_defaults(tmp_path: Path) -> None:
    settings = parse(HUB + CAMERA, tmp_path).camera("cam-1")
    assert settings == CameraConfig(
        name="cam-1", source="rtsp://viewer:s3cret@192.0.2.7/stream2", zone="cam-1"
    )
    assert settings.filters == FilterConfig() and settings.motion == MotionConfig()
    assert settings.tamper == TamperConfig()


def test_every_table_maps_onto_the_camera_settings(tmp_path: Path) -> None:
    text = (
        HUB
        + """
[detection]
model = "pose-detection"
threads = 3
min_score = 0.4
models_dir = "models"

[snapshots]
max_mb = 2.5

[[cameras]]
name = "cam-1"
source = "clips/gate.avi"
kind = "file"
zone = "market-gate"
detect_fps = 8
loop = true
end_after_s = 4
masks = [[[0, 0], [1, 0], [1, 0.1]]]

[[cameras.zones]]
name = "gate"
polygon = [[0.1, 0.4], [0.9, 0.4], [0.9, 1], [0.1, 1]]
armed = ["22:00-06:00", "12:00-13:00"]
inertia = 2

[[cameras.zones]]
name = "yard"

[cameras.filters]
threshold = 0.75
min_frames = 2
max_ratio = inf

[cameras.motion]
width = 120
recheck_s = 0.5

[cameras.tamper]
enabled = false
persist_s = 2
"""
    )
    (tmp_path / "models").mkdir()
    cfg = parse(text, tmp_path)
    assert cfg.detection.models_dir == tmp_path / "models"
    assert (cfg.detection.threads, cfg.detection.min_score) == (3, 0.4)
    assert cfg.snapshots.max_bytes == 2_500_000
    s = cfg.camera("cam-1")
    assert s.source == str(tmp_path / "clips" / "gate.avi")  # relative to the config file
    assert (s.kind, s.zone, s.detect_fps, s.loop, s.end_after_s) == (
        "file",
        "market-gate",
        8.0,
        True,
        4.0,
    )
    assert s.masks == (((0.0, 0.0), (1.0, 0.0), (1.0, 0.1)),)
    assert s.zones == (
        ZoneConfig(
            name="gate",
            polygon=((0.1, 0.4), (0.9, 0.4), (0.9, 1.0), (0.1, 1.0)),
            armed=("22:00-06:00", "12:00-13:00"),
            inertia=2,
        ),
        ZoneConfig(name="yard"),
    )
    assert s.filters == FilterConfig(threshold=0.75, min_frames=2, max_ratio=math.inf)
    assert s.motion == MotionConfig(width=120, recheck_s=0.5)
    assert s.tamper == TamperConfig(enabled=False, persist_s=2.0)


def test_keys_that_are_only_valid_together_are_accepted(tmp_path: Path) -> None:
    """Each of these is refused beside the other's default, and fine beside the other."""
    for pair in (
        "backoff_min_s = 70\nbackoff_max_s = 100\n",
        "backoff_min_s = 0.2\nbackoff_max_s = 0.5\n",
    ):
        parse(HUB + CAMERA + pair, tmp_path).camera("cam-1")
    assert errors_of(HUB + CAMERA + "backoff_min_s = 70\n", tmp_path) == [
        ("cameras[0].backoff_min_s", "backoff_max_s is smaller than backoff_min_s")
    ]


def test_urls_and_devices_are_kept_as_written(tmp_path: Path) -> None:
    for source in ("rtsp://cam/1", "picamera:1", "usb:0", "/dev/video0", "0", "/srv/clip.mp4"):
        cfg = parse(
            HUB + CAMERA.replace("rtsp://viewer:s3cret@192.0.2.7/stream2", source), tmp_path
        )
        assert cfg.cameras[0].source == source


def test_a_bare_picamera_source_is_the_first_pi_camera(tmp_path: Path) -> None:
    """Not a file called "picamera" next to the config (docs/cameras.md: "picamera" or
    "picamera:1")."""
    cfg = parse(
        HUB + CAMERA.replace("rtsp://viewer:s3cret@192.0.2.7/stream2", "picamera"), tmp_path
    )
    assert (cfg.cameras[0].source, cfg.cameras[0].source_kind) == ("picamera", "picamera")


def test_the_camera_password_is_masked_in_the_redacted_config(tmp_path: Path) -> None:
    cfg = parse(HUB + CAMERA, tmp_path)
    redacted = cfg.redacted()
    assert redacted["cameras"][0]["source"] == "rtsp://***@192.0.2.7/stream2"
    assert "s3cret" not in str(redacted)


def test_the_example_camera_is_valid_once_uncommented(tmp_path: Path) -> None:
    """The commented camera of the shipped example: an RTSP camera at a market gate, its zone
    armed at night. Uncommented, the example file is still valid."""
    text = EXAMPLE.read_text()
    camera = text[text.index("# ---- Cameras") :]
    lines = [line[2:] for line in camera.splitlines() if re.match(r"# (\[|[a-z_]+ = )", line)]
    path = tmp_path / "hub.toml"
    path.write_text(text + "\n" + "\n".join(lines) + "\n")
    cfg = load_config(path, env={})
    [gate] = cfg.cameras
    s = gate
    assert s.source.startswith("rtsp://") and s.source_kind == "stream"
    assert [(z.name, z.armed) for z in s.zones] == [("market-gate", ("22:00-06:00",))]
    assert cfg.redacted()["cameras"][0]["source"].startswith("rtsp://***@")
    assert check_config(path).returncode == 0


# -- invalid files: every one exits 2 and names the key ---------------------------------------

BAD = {
    "a zone point outside the frame": (
        CAMERA + ZONE + ZONE.replace('"gate"', '"yard"').replace("[0.9, 1.0]", "[0.9, 1.2]"),
        "cameras[0].zones[1].polygon",
        "point (0.9, 1.2) is outside the frame (0..1)",
    ),
    "a zone of two points": (
        CAMERA + '[[cameras.zones]]\nname = "gate"\npolygon = [[0.1, 0.1], [0.5, 0.5]]\n',
        "cameras[0].zones[0].polygon",
        "at least 3 points",
    ),
    "a point of three numbers": (
        CAMERA + '[[cameras.zones]]\nname = "gate"\npolygon = [[0.1, 0.1, 0.2]]\n',
        "cameras[0].zones[0].polygon[0]",
        "at most 2 items",
    ),
    "armed hours that are not a time": (
        CAMERA + ZONE.replace('["22:00-06:00"]', '["22:00-06:00", "25:00-06:00"]'),
        "cameras[0].zones[0].armed[1]",
        "'25:00-06:00': not a time of day",
    ),
    "two zones of one name": (
        CAMERA + ZONE + ZONE,
        "cameras[0].zones",
        "zone names must be unique",
    ),
    "a mask outside the frame": (
        CAMERA + "masks = [[[0, 0], [1, 0], [1, 0.1]], [[0, 0], [1.5, 0], [1, 0.1]]]\n",
        "cameras[0].masks[1]",
        "point (1.5, 0.0) is outside the frame",
    ),
    "a detect rate too high": (
        CAMERA + "detect_fps = 60\n",
        "cameras[0].detect_fps",
        "between 0.1 and 30",
    ),
    "a filter score above 1": (
        CAMERA + "[cameras.filters]\nmin_score = 1.5\n",
        "cameras[0].filters.min_score",
        "between 0 and 1",
    ),
    "filters that disagree": (
        CAMERA + "[cameras.filters]\nmin_area = 0.5\nmax_area = 0.2\n",
        "cameras[0].filters",
        "min_area is larger than max_area",
    ),
    "a motion width too small": (
        CAMERA + "[cameras.motion]\nwidth = 8\n",
        "cameras[0].motion.width",
        "between 32 and 640",
    ),
    "a tamper grid too fine": (
        CAMERA + "[cameras.tamper]\ngrid = 40\n",
        "cameras[0].tamper.grid",
        "between 2 and 16",
    ),
    "an unknown tamper key": (
        CAMERA + "[cameras.tamper]\npersist = 3\n",
        "cameras[0].tamper.persist",
        "did you mean 'persist_s'?",
    ),
    "a label the model does not know": (
        CAMERA + 'labels = ["persn"]\n',
        "cameras[0].labels[0]",
        "'persn' is not a label of model pose-detection",
    ),
    "a camera named like an input": (
        '[[inputs]]\nname = "cam-1"\nkind = "panic"\npin = 17\n' + CAMERA,
        "cameras[0].name",
        "name 'cam-1' is already used by inputs[0]",
    ),
    "two cameras of one name": (
        CAMERA + CAMERA,
        "cameras[1].name",
        "name 'cam-1' is already used by cameras[0]",
    ),
    "a rule sounding a camera": (
        CAMERA + '[[rules]]\nwhen = ["panic"]\noutput = "cam-1"\n',
        "rules[0].output",
        "'cam-1' is a camera, not an output",
    ),
    "an unknown source kind": (
        CAMERA + 'kind = "webcam"\n',
        "cameras[0].kind",
        "'webcam' is not one of 'auto', 'picamera'",
    ),
    "an unknown model": (
        '[detection]\nmodel = "yolo11"\n' + CAMERA,
        "detection.model",
        "unknown model 'yolo11'",
    ),
    "a models folder that is not there": (
        '[detection]\nmodels_dir = "no-such-folder"\n',
        "detection.models_dir",
        "folder not found",
    ),
    "a snapshot cap of nothing": (
        "[snapshots]\nmax_mb = 0\n",
        "snapshots.max_mb",
        "must be greater than 0",
    ),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_an_invalid_camera_config_names_the_key(case: str, tmp_path: Path) -> None:
    body, path, fragment = BAD[case]
    file = tmp_path / "hub.toml"
    file.write_text(HUB + body)
    result = check_config(file)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"{path}: ")]
    assert lines, result.stderr
    assert fragment in lines[0], lines[0]
    assert result.stdout == ""


def test_every_camera_error_is_reported_at_once(tmp_path: Path) -> None:
    text = (
        HUB
        + CAMERA
        + "detect_fps = 60\nmasks = [[[0, 0], [1.5, 0], [1, 0.1]]]\n"
        + ZONE.replace("[0.9, 1.0]", "[0.9, 1.2]")
        + "[cameras.filters]\nmin_score = 2.0\n"
        + "[cameras.tamper]\ngrid = 1\nblur_ratio = 3.0\n"
        + "[snapshots]\nmax_mb = -1\n"
    )
    paths = [path for path, _ in errors_of(text, tmp_path)]
    assert paths[0] == "snapshots.max_mb"  # the tables in the order of docs/config.md
    assert sorted(paths[1:]) == [
        "cameras[0].detect_fps",
        "cameras[0].filters.min_score",
        "cameras[0].masks",
        "cameras[0].tamper.blur_ratio",
        "cameras[0].tamper.grid",
        "cameras[0].zones[0].polygon",
    ]
