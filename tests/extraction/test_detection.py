"""featstore's batched face detection equals InsightFace's own `SCRFD.detect`, image by image.

The detector is the synthetic SCRFD-compatible pack of `featstore.synthetic.detector`,
written in InsightFace's layout under tmp_path; InsightFace loads the very same file
through its public `model_zoo.get_model` for the reference result.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import insightface
import numpy as np
import onnxruntime
import pytest
from PIL import Image

from featstore.errors import ModelLoadError, ModelNotFoundError
from featstore.extraction.detection import (
    Detection,
    DetectorSettings,
    FaceDetector,
    find_detector_file,
    onnx_providers,
)
from featstore.extraction.images import decode_image, detector_input
from featstore.synthetic.detector import (
    DETECTOR_FILENAME,
    write_synthetic_insightface_pack,
)
from featstore.synthetic.images import draw_background, draw_face
from featstore.synthetic.recognition import RECOGNITION_FILENAME, build_recognition_model

DET_SIZE = 640


def _two_faces() -> Image.Image:
    """Two faces side by side: the left part of one drawing, the right part of another.

    The larger, brighter face is on the left, so InsightFace ranks it first.
    """
    left = np.asarray(draw_face(center=(85, 120), axes=(45, 55), brightness=0.95, seed=2))
    right = np.asarray(draw_face(center=(240, 110), axes=(32, 40), brightness=0.8, seed=3))
    return Image.fromarray(np.concatenate([left[:, :165], right[:, 165:]], axis=1))


def _scene_images() -> dict[str, Image.Image]:
    return {
        "centred": draw_face((320, 240), seed=1),
        "large-3000x2400": draw_face((3000, 2400), center=(900, 1500), axes=(420, 520), seed=2),
        "portrait-240x320": draw_face((240, 320), center=(110, 190), axes=(42, 52), seed=3),
        "two-faces": _two_faces(),
        "background-only": draw_background((320, 240), seed=4),
        "tinted-near-corner": draw_face(
            (640, 480), center=(100, 110), axes=(50, 60), tint=(1.08, 0.95, 0.75), seed=5
        ),
        "dim-face": draw_face((320, 240), brightness=0.3, seed=6),
    }


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Image.Image]:
    """The scenes saved as JPEG and decoded by featstore, as the pipeline would see them."""
    folder = tmp_path_factory.mktemp("scene")
    decoded = {}
    for name, img in _scene_images().items():
        path = folder / f"{name}.jpg"
        img.save(path, quality=90)
        decoded[name] = decode_image(path)
    return decoded


@pytest.fixture(scope="module", params=[True, False], ids=["batched", "fixed-batch"])
def pack_root(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("batched" if request.param else "fixed")
    write_synthetic_insightface_pack(root, batched=request.param)
    return root


def _insightface_detect(det_file: Path, images: list[Image.Image]):
    model = insightface.model_zoo.get_model(str(det_file), providers=["CPUExecutionProvider"])
    model.prepare(-1, det_thresh=0.5, input_size=(DET_SIZE, DET_SIZE))
    results = []
    for img in images:
        bgr = np.ascontiguousarray(np.asarray(img)[:, :, ::-1])
        results.append(model.detect(bgr, input_size=(DET_SIZE, DET_SIZE)))
    return results


def _featstore_detect(detector: FaceDetector, images: list[Image.Image]) -> list[Detection | None]:
    inputs = [detector_input(img, DET_SIZE) for img in images]
    blobs = np.stack([blob for blob, _ in inputs])
    scales = np.array([scale for _, scale in inputs], dtype=np.float64)
    return detector.detect(blobs, scales)


def test_batched_detection_equals_insightface_per_image(
    pack_root: Path, scene: dict[str, Image.Image]
) -> None:
    detector = FaceDetector(DetectorSettings(root=pack_root))
    assert detector.model_file.name == DETECTOR_FILENAME
    batched = "batched" in pack_root.name
    assert detector.accepts_batches is batched

    names = list(scene)
    images = [scene[name] for name in names]
    ours = _featstore_detect(detector, images)
    reference = _insightface_detect(detector.model_file, images)
    assert len(ours) == len(images)

    faces_found = {}
    for name, mine, (det, kps) in zip(names, ours, reference, strict=True):
        faces_found[name] = det.shape[0]
        if det.shape[0] == 0:
            assert mine is None, name
            continue
        assert mine is not None, name
        assert mine.box.shape == (4,)
        assert mine.landmarks_2d.shape == (5, 2)
        np.testing.assert_allclose(mine.box, det[0, :4], rtol=0, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(mine.landmarks_2d, kps[0], rtol=0, atol=1e-4, err_msg=name)
        assert mine.score == pytest.approx(float(det[0, 4]), abs=1e-6), name
        # In practice the arithmetic is the same, so the numbers are identical.
        np.testing.assert_array_equal(mine.box, det[0, :4], err_msg=name)
        np.testing.assert_array_equal(mine.landmarks_2d, kps[0], err_msg=name)
        assert mine.score == float(det[0, 4]), name

    # The scene covers what it claims to cover (else the parity above proves less).
    assert faces_found["two-faces"] == 2
    two = ours[names.index("two-faces")]
    assert two is not None and two.box[2] < 165  # the first face is the left one
    assert faces_found["background-only"] == 0
    assert faces_found["dim-face"] == 0
    for name in ("centred", "large-3000x2400", "portrait-240x320", "tinted-near-corner"):
        assert faces_found[name] == 1, name


def test_result_does_not_depend_on_batch_composition(
    pack_root: Path, scene: dict[str, Image.Image]
) -> None:
    detector = FaceDetector(DetectorSettings(root=pack_root))
    images = list(scene.values())
    together = _featstore_detect(detector, images)
    alone = [_featstore_detect(detector, [img])[0] for img in images]
    reversed_order = _featstore_detect(detector, images[::-1])[::-1]
    for a, b, c in zip(together, alone, reversed_order, strict=True):
        if a is None:
            assert b is None and c is None
            continue
        assert b is not None and c is not None
        np.testing.assert_array_equal(a.box, b.box)
        np.testing.assert_array_equal(a.box, c.box)
        np.testing.assert_array_equal(a.landmarks_2d, b.landmarks_2d)
        assert a.score == b.score == c.score


def test_detection_is_in_original_pixels(pack_root: Path) -> None:
    # A face drawn at (900, 1500) with semi-axes (420, 520) in a 3000x2400 image: the box
    # must be around the ellipse in the original image's pixels (scale undone).
    detector = FaceDetector(DetectorSettings(root=pack_root))
    img = draw_face((3000, 2400), center=(900, 1500), axes=(420, 520), seed=2)
    (found,) = _featstore_detect(detector, [img])
    assert found is not None
    assert found.box.dtype == np.float32
    assert found.landmarks_2d.dtype == np.float32
    np.testing.assert_allclose(found.box, [480, 980, 1320, 2020], atol=80)


def test_empty_batch(pack_root: Path) -> None:
    detector = FaceDetector(DetectorSettings(root=pack_root))
    empty = np.empty((0, 3, DET_SIZE, DET_SIZE), dtype=np.float32)
    assert detector.detect(empty, np.empty(0)) == []


def test_providers_on_cpu(tmp_path: Path) -> None:
    write_synthetic_insightface_pack(tmp_path)
    detector = FaceDetector(DetectorSettings(root=tmp_path), device="cpu")
    assert detector.providers == ["CPUExecutionProvider"]


# --- finding the detector in a pack ------------------------------------------------------


def test_missing_pack_folder(tmp_path: Path) -> None:
    settings = DetectorSettings(root=tmp_path / "nowhere")
    pack_dir = tmp_path / "nowhere" / "models" / "buffalo_l"
    with pytest.raises(ModelNotFoundError, match=re.escape(str(pack_dir))) as info:
        find_detector_file(settings)
    assert "det_10g.onnx" in str(info.value)
    assert "Hint:" in str(info.value)


def test_pack_without_detector_lists_what_it_found(tmp_path: Path) -> None:
    pack_dir = write_synthetic_insightface_pack(tmp_path, with_recognition=True)
    (pack_dir / DETECTOR_FILENAME).unlink()
    with pytest.raises(ModelNotFoundError, match="no face detector") as info:
        find_detector_file(DetectorSettings(root=tmp_path))
    assert RECOGNITION_FILENAME in str(info.value)
    assert str(pack_dir) in str(info.value)


def test_empty_pack_folder(tmp_path: Path) -> None:
    (tmp_path / "models" / "buffalo_l").mkdir(parents=True)
    with pytest.raises(ModelNotFoundError, match="no .onnx files"):
        find_detector_file(DetectorSettings(root=tmp_path))


def test_pack_unzipped_one_level_too_deep(tmp_path: Path) -> None:
    outer = tmp_path / "models" / "buffalo_l"
    write_synthetic_insightface_pack(outer)  # -> models/buffalo_l/models/buffalo_l/det_10g.onnx
    nested = outer / "buffalo_l"
    (outer / "models" / "buffalo_l").rename(nested)
    with pytest.raises(ModelNotFoundError, match="one level too deep") as info:
        find_detector_file(DetectorSettings(root=tmp_path))
    assert f"move the files of {nested} up into {outer}" in str(info.value)


def test_detector_settings_accept_a_str_root(tmp_path: Path) -> None:
    pack_dir = write_synthetic_insightface_pack(tmp_path)
    settings = DetectorSettings(root=str(tmp_path))  # type: ignore[arg-type]
    assert settings.root == tmp_path
    assert find_detector_file(settings) == pack_dir / DETECTOR_FILENAME


def test_detector_is_chosen_next_to_recognition_model(tmp_path: Path) -> None:
    pack_dir = write_synthetic_insightface_pack(tmp_path, with_recognition=True)
    assert find_detector_file(DetectorSettings(root=tmp_path)) == pack_dir / DETECTOR_FILENAME


def test_detector_is_chosen_by_outputs_not_by_name(tmp_path: Path) -> None:
    # Neither file name starts with "det" and the recogniser sorts first: the detector is
    # still the model with >= 5 outputs.
    pack_dir = write_synthetic_insightface_pack(tmp_path, "custom", with_recognition=True)
    (pack_dir / DETECTOR_FILENAME).rename(pack_dir / "scrfd_face.onnx")
    (pack_dir / RECOGNITION_FILENAME).rename(pack_dir / "arcface.onnx")
    settings = DetectorSettings(root=tmp_path, pack="custom")
    assert find_detector_file(settings) == pack_dir / "scrfd_face.onnx"
    assert FaceDetector(settings).model_file == pack_dir / "scrfd_face.onnx"


def test_pack_name_and_root_with_tilde(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    write_synthetic_insightface_pack(tmp_path / ".insightface", "antelope")
    settings = DetectorSettings(root=Path("~/.insightface"), pack="antelope")
    expected = tmp_path / ".insightface" / "models" / "antelope" / DETECTOR_FILENAME
    assert find_detector_file(settings) == expected


def test_corrupt_onnx_file_is_a_load_error(tmp_path: Path) -> None:
    pack_dir = tmp_path / "models" / "buffalo_l"
    pack_dir.mkdir(parents=True)
    corrupt = pack_dir / "det_x.onnx"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    with pytest.raises(ModelLoadError, match=re.escape(str(corrupt))):
        find_detector_file(DetectorSettings(root=tmp_path))
    with pytest.raises(ModelLoadError, match=re.escape(str(corrupt))):
        FaceDetector(DetectorSettings(root=tmp_path))


def test_single_output_model_named_like_a_detector_is_not_a_detector(tmp_path: Path) -> None:
    pack_dir = tmp_path / "models" / "buffalo_l"
    pack_dir.mkdir(parents=True)
    import onnx

    onnx.save_model(build_recognition_model(), pack_dir / DETECTOR_FILENAME)
    with pytest.raises(ModelNotFoundError, match=f"found: {re.escape(DETECTOR_FILENAME)}"):
        FaceDetector(DetectorSettings(root=tmp_path))


# --- providers and no downloads ----------------------------------------------------------


def test_onnx_providers_cpu() -> None:
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_onnx_providers_cuda(device: str) -> None:
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers = onnx_providers(device)
        expected_id = 1 if device == "cuda:1" else 0
        assert providers[0] == ("CUDAExecutionProvider", {"device_id": expected_id})
        assert providers[-1] == "CPUExecutionProvider"
        return
    import torch

    # A machine without a GPU needs the CPU, not another onnxruntime wheel.
    advice = "onnxruntime-gpu" if torch.cuda.is_available() else r"no CUDA GPU.*device='cpu'"
    with pytest.raises(ModelLoadError, match=advice) as info:
        onnx_providers(device)
    assert repr(device) in str(info.value)
    assert "(CLI: --cpu)" in str(info.value)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("featstore tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.mark.usefixtures("no_network")
def test_missing_root_raises_promptly_without_downloading(tmp_path: Path) -> None:
    root = tmp_path / "no_insightface_here"
    start = time.monotonic()
    with pytest.raises(ModelNotFoundError, match="det_10g.onnx"):
        FaceDetector(DetectorSettings(root=root))
    assert time.monotonic() - start < 5.0
    assert not root.exists()  # nothing was created, let alone downloaded


@pytest.mark.usefixtures("no_network")
def test_loading_a_pack_needs_no_network(tmp_path: Path) -> None:
    write_synthetic_insightface_pack(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    detector = FaceDetector(DetectorSettings(root=tmp_path))
    assert detector.model_file.name == DETECTOR_FILENAME
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
