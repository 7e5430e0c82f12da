"""The synthetic SCRFD detector, loaded and run through InsightFace's own public API.

Production code loads ``det_10g.onnx`` with ``insightface.model_zoo.get_model`` and calls
``SCRFD.prepare`` / ``SCRFD.detect``; these tests do exactly the same so that the
synthetic pack is a faithful stand-in for a real buffalo_l pack.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import insightface
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from featstore.synthetic.detector import (
    DETECTOR_FILENAME,
    build_detector_model,
    write_synthetic_insightface_pack,
)
from featstore.synthetic.images import (
    draw_background,
    draw_face,
    generate_face_tree,
)
from featstore.synthetic.recognition import RECOGNITION_FILENAME

INPUT_SIZE = (640, 640)
STRIDES = (8, 16, 32)


def _bgr(image: Image.Image | np.ndarray) -> np.ndarray:
    """PIL RGB (or an RGB array) -> contiguous BGR array, as cv2.imread would give."""
    return np.ascontiguousarray(np.asarray(image)[:, :, ::-1])


def _iou(a: np.ndarray | tuple[float, ...], b: np.ndarray | tuple[float, ...]) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)


def _ellipse_box(center: tuple[float, float], axes: tuple[float, float]) -> tuple[float, ...]:
    return (center[0] - axes[0], center[1] - axes[1], center[0] + axes[0], center[1] + axes[1])


def _letterbox_blob(bgr: np.ndarray, size: tuple[int, int] = INPUT_SIZE) -> np.ndarray:
    """The exact input SCRFD.detect feeds its session: letterbox, then blobFromImage."""
    scale = min(size[0] / bgr.shape[1], size[1] / bgr.shape[0])
    new_w, new_h = int(bgr.shape[1] * scale), int(bgr.shape[0] * scale)
    canvas = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(bgr, (new_w, new_h))
    return cv2.dnn.blobFromImage(canvas, 1.0 / 128, size, (127.5, 127.5, 127.5), swapRB=True)


@pytest.fixture(scope="module", params=[True, False], ids=["batched", "unbatched"])
def batched(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture(scope="module")
def pack(batched: bool, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("insightface")
    return write_synthetic_insightface_pack(root, batched=batched, with_recognition=True)


@pytest.fixture(scope="module")
def detector(pack: Path):
    model = insightface.model_zoo.get_model(
        str(pack / DETECTOR_FILENAME), providers=["CPUExecutionProvider"]
    )
    model.prepare(-1, det_thresh=0.5, input_size=INPUT_SIZE)
    return model


def _detect(detector, image: Image.Image | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return detector.detect(_bgr(image), input_size=INPUT_SIZE)


def test_pack_layout_and_size(pack: Path) -> None:
    assert pack.name == "buffalo_l"
    assert pack.parent.name == "models"
    det = pack / DETECTOR_FILENAME
    assert det.is_file()
    assert det.stat().st_size < 1_000_000
    assert (pack / RECOGNITION_FILENAME).is_file()


def test_get_model_routes_to_scrfd(batched: bool, detector) -> None:
    assert isinstance(detector, insightface.model_zoo.scrfd.SCRFD)
    assert detector.taskname == "detection"
    assert detector.use_kps
    assert detector.fmc == 3
    assert list(detector._feat_stride_fpn) == list(STRIDES)
    # The output rank decides InsightFace's batched / non-batched decoding path.
    assert detector.batched is batched
    shape = detector.input_shape
    if batched:
        assert shape == ["batch", 3, "height", "width"]
    else:
        assert shape == [1, 3, "?", "?"]


def test_only_the_detector_is_a_detector(pack: Path) -> None:
    tasks = {}
    for path in sorted(pack.glob("*.onnx")):
        model = insightface.model_zoo.get_model(str(path), providers=["CPUExecutionProvider"])
        tasks[path.name] = getattr(model, "taskname", None)
    assert tasks[DETECTOR_FILENAME] == "detection"
    assert tasks[RECOGNITION_FILENAME] != "detection"
    assert [name for name, task in tasks.items() if task == "detection"] == [DETECTOR_FILENAME]


def test_one_blob_gives_one_face(detector) -> None:
    center, axes = (150.0, 115.0), (45.0, 55.0)
    dets, kpss = _detect(detector, draw_face(center=center, axes=axes, brightness=0.9, seed=1))
    assert dets.shape == (1, 5)
    assert kpss.shape == (1, 5, 2)
    assert dets[0, 4] > 0.5
    assert _iou(dets[0, :4], _ellipse_box(center, axes)) > 0.5

    x1, y1, x2, y2 = dets[0, :4]
    kps = kpss[0]
    # Five distinct points, inside the box (with a little slack).
    pairwise = np.linalg.norm(kps[:, None] - kps[None, :], axis=-1)
    assert pairwise[~np.eye(5, dtype=bool)].min() > 2.0
    slack_x, slack_y = 0.1 * (x2 - x1), 0.1 * (y2 - y1)
    assert np.all((kps[:, 0] > x1 - slack_x) & (kps[:, 0] < x2 + slack_x))
    assert np.all((kps[:, 1] > y1 - slack_y) & (kps[:, 1] < y2 + slack_y))
    # Face-like layout: eyes above nose above mouth, left points left of right points.
    left_eye, right_eye, nose, left_mouth, right_mouth = kps
    assert left_eye[0] < nose[0] < right_eye[0]
    assert left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])


@pytest.mark.parametrize(
    ("center", "axes", "brightness"),
    [((160, 120), (40, 50), 0.8), ((100, 100), (55, 58), 1.0), ((220, 140), (42, 46), 0.9)],
)
def test_blob_variations_detected(detector, center, axes, brightness) -> None:
    dets, _ = _detect(detector, draw_face(center=center, axes=axes, brightness=brightness, seed=7))
    assert dets.shape[0] == 1
    assert dets[0, 4] > 0.5
    assert _iou(dets[0, :4], _ellipse_box(center, axes)) > 0.5


def test_two_blobs_give_two_faces_ranked(detector) -> None:
    big_center, big_axes = (85.0, 120.0), (45.0, 55.0)
    small_center, small_axes = (240.0, 110.0), (32.0, 40.0)
    left = np.asarray(draw_face(center=big_center, axes=big_axes, brightness=0.95, seed=2))
    right = np.asarray(draw_face(center=small_center, axes=small_axes, brightness=0.8, seed=3))
    image = np.concatenate([left[:, :165], right[:, 165:]], axis=1)

    dets, kpss = _detect(detector, image)
    assert dets.shape[0] == 2
    assert kpss.shape == (2, 5, 2)
    # Sorted by score, the brighter / larger face first.
    assert dets[0, 4] > dets[1, 4] > 0.5
    assert _iou(dets[0, :4], _ellipse_box(big_center, big_axes)) > 0.5
    assert _iou(dets[1, :4], _ellipse_box(small_center, small_axes)) > 0.5


@pytest.mark.parametrize(
    "image",
    [
        draw_background((320, 240), seed=4),
        np.zeros((240, 320, 3), np.uint8),
        np.full((240, 320, 3), 128, np.uint8),
        np.full((480, 640, 3), 128, np.uint8),
    ],
    ids=["dark-noise", "black", "mid-grey", "mid-grey-640"],
)
def test_no_face(detector, image) -> None:
    dets, kpss = _detect(detector, image)
    assert dets.shape == (0, 5)
    assert kpss.shape == (0, 5, 2)


def test_keypoints_follow_content(detector) -> None:
    """Same synthetic person, different tint / offset -> different relative landmarks."""
    axes = (45.0, 55.0)
    frames = [
        draw_face(center=(160, 120), axes=axes, brightness=0.9, tint=(1.0, 0.92, 0.85), seed=5),
        draw_face(center=(140, 115), axes=axes, brightness=0.9, tint=(1.12, 0.92, 0.75), seed=6),
        draw_face(center=(180, 125), axes=axes, brightness=0.9, tint=(0.88, 0.97, 0.95), seed=7),
    ]
    relative = []
    for frame in frames:
        dets, kpss = _detect(detector, frame)
        assert dets.shape[0] == 1
        x1, y1, x2, y2 = dets[0, :4]
        relative.append((kpss[0] - [x1, y1]) / [x2 - x1, y2 - y1])
    for i in range(len(relative)):
        for j in range(i + 1, len(relative)):
            assert np.abs(relative[i] - relative[j]).max() > 0.03
    # Neutral tint reads as frontal: nose half-way between the eyes.
    neutral = relative[0]
    assert abs(neutral[2, 0] - (neutral[0, 0] + neutral[1, 0]) / 2) < 0.02


def test_output_shapes(batched: bool, pack: Path) -> None:
    session = ort.InferenceSession(
        str(pack / DETECTOR_FILENAME), providers=["CPUExecutionProvider"]
    )
    blob = _letterbox_blob(_bgr(draw_face(seed=8)))
    outputs = session.run(None, {"input.1": blob})
    assert len(outputs) == 9
    for index, out in enumerate(outputs):
        stride = STRIDES[index % 3]
        rows = (INPUT_SIZE[1] // stride) * (INPUT_SIZE[0] // stride) * 2
        channels = (1, 4, 10)[index // 3]
        expected = (1, rows, channels) if batched else (rows, channels)
        assert out.shape == expected
        assert out.dtype == np.float32


def test_batch_of_three_equals_three_single_runs(tmp_path: Path) -> None:
    pack = write_synthetic_insightface_pack(tmp_path, batched=True)
    session = ort.InferenceSession(
        str(pack / DETECTOR_FILENAME), providers=["CPUExecutionProvider"]
    )
    images = [
        draw_face(center=(150, 110), seed=10),
        draw_background((320, 240), seed=11),
        draw_face(center=(190, 130), axes=(38, 48), tint=(1.1, 0.9, 0.8), seed=12),
    ]
    blobs = [_letterbox_blob(_bgr(image)) for image in images]
    batch_outputs = session.run(None, {"input.1": np.concatenate(blobs, axis=0)})
    for index, blob in enumerate(blobs):
        single_outputs = session.run(None, {"input.1": blob})
        for batch_out, single_out in zip(batch_outputs, single_outputs, strict=True):
            assert batch_out.shape[0] == 3
            np.testing.assert_allclose(batch_out[index], single_out[0], rtol=1e-5, atol=1e-6)


def test_model_is_valid_onnx() -> None:
    for batched in (True, False):
        model = build_detector_model(batched=batched)
        onnx.checker.check_model(model)
        assert [o.name for o in model.graph.output] == [
            f"{kind}_{stride}" for kind in ("score", "bbox", "kps") for stride in STRIDES
        ]


def test_generate_face_tree(tmp_path: Path, detector) -> None:
    face_dir, video_dir = generate_face_tree(
        tmp_path, identities=2, frames_per_identity=5, no_face_every=5, seed=3
    )
    assert sorted(p.name for p in face_dir.iterdir()) == ["person_000.jpg", "person_001.jpg"]
    assert sorted(p.name for p in video_dir.iterdir()) == ["person_000", "person_001"]
    for ident in ("person_000", "person_001"):
        frames = sorted((video_dir / ident).glob("*.jpg"))
        assert [p.name for p in frames] == [f"frame_{i:04d}.jpg" for i in range(5)]
        counts = [_detect_file(detector, p) for p in frames]
        assert counts == [1, 1, 1, 1, 0]  # the 5th frame has no face
        assert _detect_file(detector, face_dir / f"{ident}.jpg") == 1
    with Image.open(face_dir / "person_000.jpg") as image:
        assert image.size == (320, 240)
        assert image.mode == "RGB"


def _detect_file(detector, path: Path) -> int:
    dets, _ = detector.detect(cv2.imread(str(path)), input_size=INPUT_SIZE)
    return int(dets.shape[0])
