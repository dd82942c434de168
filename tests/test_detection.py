"""Person detection: the real BlazePose model on real photographs that packages ship, the model
files' checks and fetching (from wheels built here, never from the network), the command line,
and the SSD and YOLOv8 decoders on tensors laid out as those models lay them out."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import matplotlib.cbook
import numpy as np
import pytest
from PIL import Image
from skimage import data

from models.fetch import fetch_model
from models.manifest import PACKAGE_DIR, get_spec, load_manifest, status
from sensors.detection import Detection, FrameError, ModelError, load_detector
from sensors.detection.blazepose import AnchorOptions, ssd_anchors
from sensors.detection.nms import hard_nms, weighted_nms
from sensors.detection.preprocess import Placement, Preprocessor
from sensors.detection.runtime import TensorInfo
from sensors.detection.ssd import SsdDecoder
from sensors.detection.yolo import YoloV8Decoder
from tuquan.cli import main

MODEL = PACKAGE_DIR / "pose_detection.tflite"
POSE_SHA256 = "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c"
GRACE_HOPPER = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
# Inside the astronaut's face in skimage's astronaut.png (512 x 512): eyes, nose and mouth.
ASTRONAUT_FACE = (180, 90, 260, 160)


@pytest.fixture(scope="module")
def detector():  # type: ignore[no-untyped-def]
    return load_detector()


def grace_hopper() -> np.ndarray:
    return np.asarray(Image.open(GRACE_HOPPER).convert("RGB"))


def people(found: list[Detection]) -> list[Detection]:
    return [d for d in found if d.label == "person"]


def contains(box: tuple[float, float, float, float], inner: tuple[float, ...]) -> bool:
    return box[0] <= inner[0] and box[1] <= inner[1] and box[2] >= inner[2] and box[3] >= inner[3]


# -- the real model on real photographs -----------------------------------------------------------


def test_the_default_model_is_the_pinned_file_and_the_manifest_describes_it() -> None:
    spec = get_spec("pose-detection")
    assert spec.sha256 == POSE_SHA256
    assert spec.source is not None and spec.source.package == "mediapipe"
    assert spec.source.version == "0.10.14"
    assert spec.source.member == "mediapipe/modules/pose_detection/pose_detection.tflite"
    assert (spec.decoder, spec.input_size, spec.input_range) == ("blazepose", (224, 224), (-1, 1))
    assert status(spec) == "verified"


@pytest.mark.parametrize("photo", ["grace_hopper", "astronaut"])
def test_people_in_photographs_are_found(detector, photo: str) -> None:  # type: ignore[no-untyped-def]
    frame = grace_hopper() if photo == "grace_hopper" else data.astronaut()
    found = people(detector.detect(frame))
    assert len(found) == 1, found
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = found[0].box
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert found[0].score >= detector.min_score


@pytest.mark.parametrize("photo", ["coffee", "brick", "rocket"])
def test_photographs_without_people_give_nothing(detector, photo: str) -> None:  # type: ignore[no-untyped-def]
    frame = getattr(data, photo)()  # brick is grey (H x W): the detector takes that too
    assert detector.detect(frame) == []


def test_the_box_covers_the_persons_face(detector) -> None:  # type: ignore[no-untyped-def]
    (person,) = detector.detect(data.astronaut())
    assert contains(person.box, ASTRONAUT_FACE)


def test_boxes_are_in_pixels_of_the_frame_given(detector) -> None:  # type: ignore[no-untyped-def]
    """A small person in a wide 1280 x 720 frame: the letterbox is undone, so the box is where
    the person is, not where the person sits in the model's square input."""
    frame = np.full((720, 1280, 3), 90, np.uint8)
    left, top, size = 900, 300, 256
    frame[top : top + size, left : left + size] = np.asarray(
        Image.fromarray(data.astronaut()).resize((size, size))
    )
    (person,) = people(detector.detect(frame))
    face = [left + v * size / 512 if i % 2 == 0 else top + v * size / 512
            for i, v in enumerate(ASTRONAUT_FACE)]  # fmt: skip
    assert contains(person.box, tuple(face))
    x0, y0, x1, y1 = person.box
    assert x0 > left - size and x1 < left + 2 * size  # near the person, not across the frame
    assert (x0 + x1) / 2 == pytest.approx(left + size / 2, abs=size / 2)


def test_a_crop_of_a_frame_is_a_frame(detector) -> None:  # type: ignore[no-untyped-def]
    """The camera pipeline hands the detector views into a bigger frame (not contiguous)."""
    frame = np.zeros((800, 900, 3), np.uint8)
    frame[100:612, 200:712] = data.astronaut()
    view = frame[100:612, 200:712]
    assert not view.flags["C_CONTIGUOUS"]
    (person,) = detector.detect(view)
    assert contains(person.box, ASTRONAUT_FACE)


def test_min_score_drops_weaker_detections() -> None:
    strict = load_detector(min_score=0.99, threads=1)
    assert strict.detect(data.astronaut()) == []
    with pytest.raises(ModelError, match="min_score"):
        load_detector(min_score=1.5)


def test_frames_the_detector_cannot_use_are_refused_clearly(detector) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FrameError, match="uint8"):
        detector.detect(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(FrameError, match="HxWx3"):
        detector.detect(np.zeros((64, 64, 2), np.uint8))
    with pytest.raises(ValueError):  # FrameError is also a ValueError
        detector.detect(np.zeros((1, 1, 3), np.uint8))
    rgba = np.dstack([data.astronaut(), np.full((512, 512), 255, np.uint8)])
    assert people(detector.detect(rgba))


# -- model files: checked before loading ----------------------------------------------------------


def test_a_model_file_with_the_wrong_hash_is_refused(tmp_path: Path) -> None:
    damaged = bytearray(MODEL.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    (tmp_path / "pose_detection.tflite").write_bytes(bytes(damaged))
    with pytest.raises(ModelError) as err:
        load_detector(models_dir=tmp_path)
    message = str(err.value)
    assert "pose-detection" in message and "pose_detection.tflite" in message
    assert POSE_SHA256 in message and "sha256" in message
    assert "tuquan model fetch pose-detection" in message
    assert status(get_spec("pose-detection", tmp_path), tmp_path) == "wrong sha256"


def test_a_missing_model_file_says_how_to_fetch_it(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"missing; run `tuquan model fetch pose-detection"):
        load_detector(models_dir=tmp_path)


def test_an_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(ModelError, match=r"unknown model 'nope'.*pose-detection"):
        load_detector("nope")


def test_a_model_without_a_pinned_hash_is_not_loaded(tmp_path: Path) -> None:
    shutil.copy(MODEL, tmp_path / "yolov8n_float32.tflite")
    assert status(get_spec("yolov8n", tmp_path), tmp_path) == "unpinned"
    with pytest.raises(ModelError, match="no sha256 is pinned"):
        load_detector("yolov8n", models_dir=tmp_path)
    with pytest.raises(ModelError, match="nowhere to get yolov8n_float32.tflite from"):
        fetch_model(get_spec("yolov8n", tmp_path), tmp_path)


def test_a_model_that_does_not_fit_its_decoder_is_refused(tmp_path: Path) -> None:
    """The pose model declared as a YOLO model: caught at load, with the shapes."""
    shutil.copy(MODEL, tmp_path / "pose_detection.tflite")
    (tmp_path / "local.toml").write_text(
        '[models.wrong]\nfile = "pose_detection.tflite"\n'
        f'sha256 = "{POSE_SHA256}"\ndecoder = "yolov8"\nlabels = ["person"]\n'
        "input_size = [224, 224]\n"
    )
    with pytest.raises(ModelError, match=r"model wrong: the yolov8 decoder needs one output"):
        load_detector("wrong", models_dir=tmp_path)


def test_manifest_errors_name_the_field(tmp_path: Path) -> None:
    (tmp_path / "local.toml").write_text('[models.bad]\nfile = "x.tflite"\ndecoder = "rcnn"\n')
    with pytest.raises(ModelError, match=r"models\.bad\.decoder: one of blazepose, ssd, yolov8"):
        load_manifest(tmp_path)


# -- fetching, from wheels built here -------------------------------------------------------------


def make_wheel(folder: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stem = name.replace("-", "_")  # a wheel's file name separates its fields with "-"
    wheel = folder / f"{stem}-{version}-py3-none-any.whl"
    info = f"{stem}-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, content in files.items():
            z.writestr(path, content)
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        z.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        )  # fmt: skip
        z.writestr(f"{info}/RECORD", "")
    return wheel


def test_fetch_takes_the_model_out_of_its_wheel_and_it_then_detects(tmp_path: Path) -> None:
    """The real manifest entry (mediapipe==0.10.14, its member, its sha256), fetched with pip
    from a folder holding a wheel of that name and version instead of the package index."""
    member = "mediapipe/modules/pose_detection/pose_detection.tflite"
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "mediapipe", "0.10.14", {member: MODEL.read_bytes(), "mediapipe/x.py": b""})
    models = tmp_path / "models"
    lines: list[str] = []
    path = fetch_model(
        get_spec("pose-detection", models), models, find_links=[str(wheels)], log=lines.append
    )
    assert path == models / "pose_detection.tflite"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == POSE_SHA256
    assert "sha256 verified" in lines[-1]
    assert [p.name for p in models.iterdir()] == ["pose_detection.tflite"]  # no leftovers
    assert people(load_detector(models_dir=models).detect(data.astronaut()))
    # Again: nothing to do.
    fetch_model(
        get_spec("pose-detection", models), models, find_links=[str(wheels)], log=lines.append
    )
    assert "already there" in lines[-1]


def test_fetch_refuses_a_file_with_the_wrong_hash_and_installs_nothing(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    member = "mediapipe/modules/pose_detection/pose_detection.tflite"
    make_wheel(wheels, "mediapipe", "0.10.14", {member: b"not the model"})
    models = tmp_path / "models"
    with pytest.raises(ModelError, match=r"has sha256 [0-9a-f]{64}, expected 9ba9dd3d.*nothing"):
        fetch_model(get_spec("pose-detection", models), models, find_links=[str(wheels)])
    assert not (models / "pose_detection.tflite").exists()
    assert not any(models.iterdir())


def test_fetch_names_the_package_when_no_wheel_can_be_had(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    models = tmp_path / "models"
    with pytest.raises(ModelError, match=r"pip could not download mediapipe==0\.10\.14"):
        fetch_model(get_spec("pose-detection", models), models, find_links=[str(wheels)])


def test_fetch_pins_a_hash_given_for_an_unpinned_model(tmp_path: Path) -> None:
    """A model the manifest names by source only: fetch checks the hash the user gives and
    records it in local.toml, and the model then loads."""
    payload = b"\x00model bytes\x01" * 100
    digest = hashlib.sha256(payload).hexdigest()
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "tuquan-test-models", "1.0", {"tuquan_test_models/m.tflite": payload})
    models = tmp_path / "models"
    models.mkdir()
    (models / "local.toml").write_text(
        '[models.test-model]\nfile = "m.tflite"\ndecoder = "ssd"\nlabels = ["person"]\n'
        '[models.test-model.source]\npackage = "tuquan-test-models"\nversion = "1.0"\n'
        'member = "tuquan_test_models/m.tflite"\n'
    )
    spec = get_spec("test-model", models)
    with pytest.raises(ModelError, match="pins no sha256"):
        fetch_model(spec, models, find_links=[str(wheels)])
    with pytest.raises(ModelError, match="expected 0{64}"):
        fetch_model(spec, models, sha256="0" * 64, find_links=[str(wheels)])
    fetch_model(spec, models, sha256=digest, find_links=[str(wheels)], log=lambda _: None)
    pinned = get_spec("test-model", models)
    assert pinned.sha256 == digest and pinned.source == spec.source
    assert status(pinned, models) == "verified"


def test_fetch_from_a_url_reads_a_zip_member(tmp_path: Path) -> None:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("detect.tflite", MODEL.read_bytes())
        z.writestr("labelmap.txt", "person\n")
    models = tmp_path / "models"
    models.mkdir()
    (models / "local.toml").write_text(
        f'[models.zipped]\nfile = "zipped.tflite"\nsha256 = "{POSE_SHA256}"\n'
        'decoder = "blazepose"\nlabels = ["person"]\ninput_range = [-1.0, 1.0]\n'
        f'[models.zipped.source]\nurl = "{archive.as_uri()}"\nmember = "detect.tflite"\n'
    )
    fetch_model(get_spec("zipped", models), models, log=lambda _: None)
    assert status(get_spec("zipped", models), models) == "verified"


# -- the command line -----------------------------------------------------------------------------


def test_detect_prints_one_json_line_per_image_and_goes_on_after_a_bad_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    astronaut = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(astronaut)
    coffee = tmp_path / "coffee.jpg"
    Image.fromarray(data.coffee()).save(coffee)
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a picture")
    missing = tmp_path / "missing.png"
    argv = ["detect", str(astronaut), str(bad), str(missing), str(coffee), "--threads", "1"]
    assert main(argv) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["image"] for line in lines] == [
        str(astronaut),
        str(bad),
        str(missing),
        str(coffee),
    ]
    (person,) = lines[0]["detections"]
    assert set(person) == {"label", "score", "box"}
    assert person["label"] == "person" and 0.5 <= person["score"] <= 1
    assert len(person["box"]) == 4 and contains(tuple(person["box"]), ASTRONAUT_FACE)
    assert "not a picture" in lines[1]["error"] and "detections" not in lines[1]
    assert "No such file" in lines[2]["error"]
    assert lines[3] == {"image": str(coffee), "detections": []}


def test_detect_as_a_command(tmp_path: Path) -> None:
    """`tuquan detect` in its own process: exit 0 and JSON alone on stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "tuquan", "detect", str(GRACE_HOPPER), "--min-score", "0.5"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    result = json.loads(line)
    assert result["image"] == str(GRACE_HOPPER)
    assert [d["label"] for d in result["detections"]] == ["person"]


def test_detect_with_a_model_that_cannot_load_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["detect", str(GRACE_HOPPER), "--models-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "pose_detection.tflite is missing" in err and "tuquan model fetch" in err


def test_model_list_and_fetch_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    models = tmp_path / "models"
    assert main(["model", "list", "--dir", str(models)]) == 0
    out = capsys.readouterr().out
    assert "pose-detection" in out and "blazepose" in out and "missing" in out
    wheels = tmp_path / "wheels"
    member = "mediapipe/modules/pose_detection/pose_detection.tflite"
    make_wheel(wheels, "mediapipe", "0.10.14", {member: MODEL.read_bytes()})
    argv = ["model", "fetch", "pose-detection", "--dir", str(models), "--find-links", str(wheels)]
    assert main(argv) == 0
    assert "sha256 verified" in capsys.readouterr().out
    assert main(["model", "list", "--dir", str(models)]) == 0
    listed = capsys.readouterr().out.splitlines()
    row = next(line for line in listed if line.startswith("pose-detection"))
    assert row.split()[:3] == ["pose-detection", "blazepose", "verified"]
    assert main(["model", "fetch", "nope", "--dir", str(models)]) == 1
    assert "unknown model 'nope'" in capsys.readouterr().err


# -- BlazePose decoding pieces --------------------------------------------------------------------


def test_blazepose_anchors_match_mediapipes_layout() -> None:
    anchors = ssd_anchors(AnchorOptions())
    assert anchors.shape == (2254, 4)
    # stride 8: 28 x 28 cells, two anchors each; then 14 x 14 x 2; then 7 x 7 x 6 (3 layers)
    assert anchors[0].tolist() == pytest.approx([0.5 / 28, 0.5 / 28, 1.0, 1.0])
    assert anchors[1].tolist() == anchors[0].tolist()
    assert anchors[2][0] == pytest.approx(1.5 / 28)
    assert anchors[1568].tolist() == pytest.approx([0.5 / 14, 0.5 / 14, 1.0, 1.0])
    assert anchors[1568 + 392].tolist() == pytest.approx([0.5 / 7, 0.5 / 7, 1.0, 1.0])
    assert np.all(anchors[1568 + 392 : 1568 + 392 + 6] == anchors[1568 + 392])
    assert anchors[-1].tolist() == pytest.approx([6.5 / 7, 6.5 / 7, 1.0, 1.0])


def test_weighted_nms_averages_a_group_by_score_and_keeps_the_best_score() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float64)
    scores = np.array([0.6, 0.9, 0.7])
    extras = np.array([[0.0], [10.0], [5.0]])
    out = weighted_nms(boxes, scores, extras, 0.3, 10)
    assert [score for _, score, _ in out] == [0.9, 0.7]
    box, _, extra = out[0]
    assert box.tolist() == pytest.approx([0.6, 0, 10.6, 10])  # (0*0.6 + 1*0.9) / 1.5 = 0.6
    assert extra.tolist() == pytest.approx([6.0])
    assert out[1][0].tolist() == [50, 50, 60, 60]


def test_letterbox_placement_maps_model_coordinates_back_to_the_frame() -> None:
    prep = Preprocessor(224, 224, resize="letterbox", input_range=(-1.0, 1.0))
    frame = np.zeros((360, 640, 3), np.uint8)
    frame[:, :320] = 255  # left half white
    tensor, p = prep(frame)
    assert tensor.shape == (1, 224, 224, 3) and tensor.dtype == np.float32
    assert (p.scale_x, p.offset_x, p.offset_y) == (0.35, 0.0, 49.0)  # 640x360 -> 224x126
    assert tensor[0, 0, 0, 0] == -1.0  # padding: black
    assert tensor[0, 112, 10, 0] == 1.0 and tensor[0, 112, 200, 0] == -1.0
    assert float(p.to_frame_x(np.array(0.5))) == pytest.approx(320)
    assert float(p.to_frame_y(np.array(0.5))) == pytest.approx(180)
    assert float(p.to_frame_y(np.array(49 / 224))) == pytest.approx(0)


def test_quantized_inputs_get_raw_pixels_when_the_quantization_says_so() -> None:
    # SSD MobileNet v1 quant: uint8 input, scale 1/128, zero point 128, for the range [-1, 1].
    prep = Preprocessor(
        300, 300, resize="stretch", input_range=(-1.0, 1.0), dtype=np.uint8, scale=1 / 128,
        zero_point=128,
    )  # fmt: skip
    frame = np.arange(256, dtype=np.uint8).repeat(3).reshape(16, 16, 3)
    tensor, _ = prep(frame)
    assert tensor.dtype == np.uint8 and tensor.min() == 0 and tensor.max() == 255


# -- SSD and YOLOv8 decoders on tensors shaped as those models output them ------------------------

SSD_OUTPUTS = (
    TensorInfo("TFLite_Detection_PostProcess", 0, (1, 10, 4), np.float32),
    TensorInfo("TFLite_Detection_PostProcess:1", 1, (1, 10), np.float32),
    TensorInfo("TFLite_Detection_PostProcess:2", 2, (1, 10), np.float32),
    TensorInfo("TFLite_Detection_PostProcess:3", 3, (1,), np.float32),
)
COCO90 = get_spec("ssd-mobilenet-v1").labels
STRETCH_640x480 = Placement(640, 480, 300, 300, 300 / 640, 300 / 480, 0.0, 0.0)


def ssd_tensors() -> list[np.ndarray]:
    boxes = np.zeros((1, 10, 4), np.float32)
    classes = np.zeros((1, 10), np.float32)
    scores = np.zeros((1, 10), np.float32)
    boxes[0, 0] = [0.1, 0.2, 0.9, 0.4]  # person: y0, x0, y1, x1
    boxes[0, 1] = [0.5, 0.5, 0.75, 1.2]  # car, reaching past the right edge
    boxes[0, 2] = [0.0, 0.0, 0.1, 0.1]  # class 11: unused COCO id ("???")
    boxes[0, 3] = [0.3, 0.3, 0.4, 0.4]  # a dog below the threshold
    classes[0, :4] = [0, 2, 11, 17]
    scores[0, :4] = [0.91, 0.62, 0.95, 0.3]
    scores[0, 4] = 0.99  # past `count`: padding, ignored
    return [boxes, classes, scores, np.array([4.0], np.float32)]


def test_ssd_decoder_reads_the_four_tensors() -> None:
    decode = SsdDecoder(SSD_OUTPUTS, COCO90, model="ssd-mobilenet-v1")
    found = decode(ssd_tensors(), STRETCH_640x480, 0.5)
    assert [(d.label, d.score) for d in found] == [("person", 0.91), ("car", 0.62)]
    assert found[0].box == pytest.approx((128.0, 48.0, 256.0, 432.0))
    assert found[1].box == pytest.approx((320.0, 240.0, 640.0, 360.0))  # clipped to the frame


def test_ssd_decoder_follows_the_manifest_order_or_notices_swapped_scores() -> None:
    boxes, classes, scores, count = ssd_tensors()
    shuffled = [scores, boxes, count, classes]
    infos = [SSD_OUTPUTS[2], SSD_OUTPUTS[0], SSD_OUTPUTS[3], SSD_OUTPUTS[1]]
    decode = SsdDecoder(infos, COCO90, roles=["scores", "boxes", "count", "classes"])
    assert [d.label for d in decode(shuffled, STRETCH_640x480, 0.5)] == ["person", "car"]
    # Classes and scores listed the other way round, no `outputs` in the manifest:
    decode = SsdDecoder(SSD_OUTPUTS, COCO90)
    found = decode([boxes, scores, classes, count], STRETCH_640x480, 0.5)
    assert [(d.label, d.score) for d in found] == [("person", 0.91), ("car", 0.62)]


def test_ssd_decoder_refuses_outputs_that_are_not_boxes_first() -> None:
    wrong = (SSD_OUTPUTS[1], SSD_OUTPUTS[0], SSD_OUTPUTS[2], SSD_OUTPUTS[3])
    with pytest.raises(ModelError, match="set `outputs` in the manifest"):
        SsdDecoder(wrong, COCO90, model="m")


COCO80 = get_spec("yolov8n").labels


def yolo_tensor(n: int = 8400) -> np.ndarray:
    out = np.zeros((1, 84, n), np.float32)
    rng = np.random.default_rng(1)
    out[0, 4:, :] = rng.uniform(0.0, 0.2, (80, n))  # background everywhere
    out[0, :4, :] = rng.uniform(0.1, 0.9, (4, n))

    def put(i: int, xywh: list[float], cls: int, score: float) -> None:
        out[0, :4, i] = xywh
        out[0, 4 + cls, i] = score

    put(10, [0.5, 0.5, 0.2, 0.4], 0, 0.88)  # a person in the middle
    put(11, [0.51, 0.5, 0.2, 0.4], 0, 0.80)  # the same person again: suppressed
    put(12, [0.52, 0.5, 0.2, 0.4], 2, 0.70)  # a car on the same spot: another label, kept
    put(50, [0.1, 0.45, 0.1, 0.1], 16, 0.6)  # a dog near the left edge
    put(90, [0.8, 0.5, 0.1, 0.1], 0, 0.4)  # below the threshold
    return out


def test_yolov8_decoder_picks_classes_and_suppresses_duplicates_per_label() -> None:
    info = (TensorInfo("Identity", 0, (1, 84, 8400), np.float32),)
    decode = YoloV8Decoder(info, COCO80, input_size=(640, 640))
    # 1280 x 720 letterboxed into 640 x 640: scale 0.5, 140 pixels of padding above and below
    letterbox = Placement(1280, 720, 640, 640, 0.5, 0.5, 0.0, 140.0)
    found = decode([yolo_tensor()], letterbox, 0.5)
    assert [(d.label, d.score) for d in found] == [("person", 0.88), ("car", 0.7), ("dog", 0.6)]
    # x: 0.4 * 640 / 0.5 = 512 ...; y: (0.3 * 640 - 140) / 0.5 = 104 ...
    assert found[0].box == pytest.approx((512.0, 104.0, 768.0, 616.0))
    assert found[2].box == pytest.approx((64.0, 232.0, 192.0, 360.0))


def test_yolov8_decoder_takes_the_transposed_layout_and_pixel_boxes() -> None:
    tensor = yolo_tensor(100)
    tensor[0, :4, :] *= 640  # boxes in input pixels
    info = (TensorInfo("Identity", 0, (1, 100, 84), np.float32),)
    decode = YoloV8Decoder(info, COCO80, input_size=(640, 640), box_units="pixels")
    square = Placement(640, 640, 640, 640, 1.0, 1.0, 0.0, 0.0)
    found = decode([np.ascontiguousarray(tensor.transpose(0, 2, 1))], square, 0.5)
    assert [d.label for d in found] == ["person", "car", "dog"]
    assert found[0].box == pytest.approx((256.0, 192.0, 384.0, 448.0))


def test_hard_nms_keeps_the_best_of_each_overlapping_group() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], np.float64)
    assert hard_nms(boxes, np.array([0.5, 0.9, 0.8]), 0.5, 10) == [1, 2]
    assert hard_nms(boxes, np.array([0.5, 0.9, 0.8]), 0.5, 1) == [1]
