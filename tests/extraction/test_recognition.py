"""ArcFace identity embeddings (SPEC §8): InsightFace's own numbers, as a model of the store."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import insightface
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import MODEL, Dataset, Models, fast_runtime, run_extract
from featstore_cli.main import main
from insightface.app.common import Face
from insightface.model_zoo.arcface_onnx import ArcFaceONNX
from insightface.utils import face_align
from store_checks import extract_command

from featstore.errors import ModelNotFoundError
from featstore.extraction.detection import DetectorSettings
from featstore.extraction.images import decode_image
from featstore.extraction.recognition import ArcFaceEmbedder, resolve_arcface
from featstore.store import Store
from featstore.synthetic.detector import DETECTOR_FILENAME, write_synthetic_insightface_pack
from featstore.synthetic.images import draw_face, generate_face_tree
from featstore.synthetic.recognition import RECOGNITION_DIM, RECOGNITION_FILENAME

ARCFACE = "arcface_buffalo_l"


@pytest.fixture(scope="module")
def edge_dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """2 identities x 3 frames, plus a frame whose face sits on the image's left edge."""
    root = tmp_path_factory.mktemp("arcface_data")
    face_dir, video_dir = generate_face_tree(
        root, identities=2, frames_per_identity=3, no_face_every=3, seed=7
    )
    identity = sorted(p.name for p in video_dir.iterdir())[0]
    edge = draw_face((320, 240), center=(40.0, 120.0), axes=(45.0, 55.0), seed=3)
    edge.save(video_dir / identity / "zz_edge.png")
    return Dataset(root, face_dir, video_dir)


@pytest.fixture(scope="module")
def arcface_store(
    tmp_path_factory: pytest.TempPathFactory, edge_dataset: Dataset, models: Models
) -> Path:
    store = tmp_path_factory.mktemp("arcface") / "store"
    summary = run_extract(
        edge_dataset,
        store,
        models,
        models=[MODEL, "arcface"],
        runtime=fast_runtime(batch_size=3),
    )
    assert summary.models == (MODEL, ARCFACE)
    return store


def _rows(store: Path, model: str) -> dict[str, dict[str, Any]]:
    table = (
        Store(store)
        .sql(f"SELECT * FROM images WHERE model = '{model}' ORDER BY image_path")
        .to_pylist()
    )
    return {row["image_path"]: row for row in table}


@pytest.fixture(scope="module")
def insightface_model(models: Models) -> ArcFaceONNX:
    path = models.insightface_root / "models" / "buffalo_l" / RECOGNITION_FILENAME
    model = insightface.model_zoo.get_model(str(path), providers=["CPUExecutionProvider"])
    assert isinstance(model, ArcFaceONNX)
    model.prepare(-1)
    return model


def _insightface_embedding(model: ArcFaceONNX, path: Path, kps: list[list[float]]) -> np.ndarray:
    """`ArcFaceONNX.get` + `normed_embedding` on the BGR image, with the stored keypoints."""
    bgr = np.ascontiguousarray(np.asarray(decode_image(path))[:, :, ::-1])
    face = Face(kps=np.asarray(kps, dtype=np.float32))
    model.get(bgr, face)
    return np.asarray(face.normed_embedding)


def test_synthetic_recognition_model_routes_to_arcface(tmp_path: Path) -> None:
    for batched in (True, False):
        pack = write_synthetic_insightface_pack(
            tmp_path / str(batched), with_recognition=True, recognition_batched=batched
        )
        model = insightface.model_zoo.get_model(
            str(pack / RECOGNITION_FILENAME), providers=["CPUExecutionProvider"]
        )
        assert isinstance(model, ArcFaceONNX)
        assert model.input_size == (112, 112)
        assert model.output_shape == (["batch", 512] if batched else [1, 512])
        assert (model.input_mean, model.input_std) == (127.5, 127.5)  # as w600k_r50
        crops = [np.full((112, 112, 3), v, np.uint8) for v in (30, 200)]
        first, second = (model.get_feat(c)[0] for c in crops)
        cosine = first @ second / np.linalg.norm(first) / np.linalg.norm(second)
        assert cosine < 0.99  # content-dependent


def test_embeddings_equal_insightface_get_on_every_image(
    arcface_store: Path, edge_dataset: Dataset, insightface_model: ArcFaceONNX
) -> None:
    rows = _rows(arcface_store, ARCFACE)
    ok = [row for row in rows.values() if row["status"] == "ok"]
    assert len(ok) >= 6
    base = edge_dataset.root
    worst = 0.0
    for row in ok:
        expected = _insightface_embedding(
            insightface_model, base / row["image_path"], row["landmarks_2d"]
        )
        stored = np.asarray(row["features"], dtype=np.float32)
        assert stored.shape == (RECOGNITION_DIM,)
        worst = max(worst, float(np.abs(stored - expected).max()))
    # Bit for bit: each row normalised by its own 1-D norm, as normed_embedding is (SPEC §9).
    assert worst == 0.0
    # Not all alike: the synthetic model tells images apart.
    vectors = np.array([row["features"] for row in ok])
    assert (vectors @ vectors.T).min() < 0.99


def test_same_rows_and_detection_as_dinov2(arcface_store: Path) -> None:
    arcface, dino = _rows(arcface_store, ARCFACE), _rows(arcface_store, MODEL)
    assert arcface.keys() == dino.keys()
    for path, row in arcface.items():
        other = dino[path]
        for column in ("status", "box", "landmarks_2d", "det_score", "spherical_angles"):
            assert row[column] == other[column], (path, column)
        assert (row["features"] is None) == (other["features"] is None)


def test_a_crop_partly_outside_the_image_is_insightface_s_border(
    arcface_store: Path, edge_dataset: Dataset, insightface_model: ArcFaceONNX, models: Models
) -> None:
    ((path, row),) = [(p, r) for p, r in _rows(arcface_store, ARCFACE).items() if "zz_edge" in p]
    assert row["status"] == "ok"
    image = np.asarray(decode_image(edge_dataset.root / path))
    ref = resolve_arcface("arcface", DetectorSettings(root=models.insightface_root))
    crop = ArcFaceEmbedder(ref).crop(image, np.asarray(row["landmarks_2d"], np.float32))
    assert (crop[:, :4] == 0).all()  # the left of the crop lies outside the image
    # Warping the RGB image and reversing the crop's channels is InsightFace's BGR crop.
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    kps = np.asarray(row["landmarks_2d"], np.float32)
    assert np.array_equal(crop, face_align.norm_crop(bgr, landmark=kps, image_size=112))
    expected = _insightface_embedding(
        insightface_model, edge_dataset.root / path, row["landmarks_2d"]
    )
    assert np.abs(np.asarray(row["features"]) - expected).max() <= 1e-5


def test_fixed_batch_of_one_runs_image_by_image(
    tmp_path: Path, edge_dataset: Dataset, models: Models, arcface_store: Path
) -> None:
    root = tmp_path / "insightface"
    write_synthetic_insightface_pack(root, with_recognition=True, recognition_batched=False)
    settings = DetectorSettings(root=root)
    assert not ArcFaceEmbedder(resolve_arcface("arcface", settings)).accepts_batches
    store = tmp_path / "store"
    run_extract(
        edge_dataset,
        store,
        models,
        models=["arcface"],
        detector=settings,
        runtime=fast_runtime(batch_size=4, workers=1),  # images through shared memory
    )
    fixed, batched = _rows(store, ARCFACE), _rows(arcface_store, ARCFACE)
    assert fixed.keys() == batched.keys()
    for path, row in fixed.items():
        if row["features"] is None:
            assert batched[path]["features"] is None
        else:
            difference = np.subtract(row["features"], batched[path]["features"])
            assert np.abs(difference).max() <= 1e-5


def test_provenance_and_resume(arcface_store: Path, edge_dataset: Dataset, models: Models) -> None:
    info = Store(arcface_store).model(ARCFACE)
    assert info.dim == RECOGNITION_DIM
    recognition = info.provenance["recognition"]
    assert recognition["pack"] == "buffalo_l"
    assert recognition["model_file"] == RECOGNITION_FILENAME
    assert re.fullmatch("[0-9a-f]{64}", recognition["model_sha256"])
    assert info.provenance["detector"]["model_file"] == DETECTOR_FILENAME
    again = run_extract(
        edge_dataset, arcface_store, models, models=["arcface", MODEL], runtime=fast_runtime()
    )
    assert again.identities_extracted == 0


def test_pack_without_recognition_model_lists_what_insightface_routes(tmp_path: Path) -> None:
    pack = write_synthetic_insightface_pack(tmp_path)
    (pack / "notes.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelNotFoundError) as info:
        resolve_arcface("arcface", DetectorSettings(root=tmp_path))
    message = str(info.value)
    assert str(pack) in message
    assert f"{DETECTOR_FILENAME} -> SCRFD (detection)" in message
    assert "notes.onnx -> unreadable" in message
    assert "Hint:" in message


def test_arcface_of_another_pack_is_refused(models: Models) -> None:
    settings = DetectorSettings(root=models.insightface_root)
    with pytest.raises(ModelNotFoundError, match="stored as 'arcface_buffalo_l'"):
        resolve_arcface("arcface_antelopev2", settings)
    assert resolve_arcface("arcface_buffalo_l", settings).name == ARCFACE


def test_cli_extract_model_arcface_and_query(
    tmp_path: Path, edge_dataset: Dataset, models: Models
) -> None:
    store = tmp_path / "store"
    # A bare --weights PATH is DINOv2's even with arcface asked for too.
    args = [*extract_command(edge_dataset, store, models)[3:], "--model", "arcface"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert sorted(m.name for m in Store(store).models()) == [ARCFACE, MODEL]
    query = "SELECT count(*) AS n FROM identity_consistency"
    result = CliRunner().invoke(main, ["query", "--store", str(store), "--format", "csv", query])
    assert result.exit_code == 0, result.output
    assert result.output.split() == ["n", "5"]  # 2 x 2 ok frames and the edge frame


def test_cli_pack_without_recognition_model(
    tmp_path: Path, edge_dataset: Dataset, models: Models
) -> None:
    write_synthetic_insightface_pack(tmp_path / "bare")
    args = extract_command(edge_dataset, tmp_path / "store", models)[3:]
    args[args.index("--insightface-root") + 1] = str(tmp_path / "bare")
    result = CliRunner().invoke(main, [*args, "--model", "arcface"])
    assert result.exit_code != 0
    assert f"{DETECTOR_FILENAME} -> SCRFD (detection)" in result.output
    assert not (tmp_path / "store" / "model=dinov2_vits14").exists()


def test_aligning_a_face_warns_nothing(models: Models) -> None:
    """insightface's `norm_crop` calls scikit-image's deprecated `estimate` (a FutureWarning
    per image on every ArcFace run); featstore silences it at that call."""
    ref = resolve_arcface("arcface", DetectorSettings(root=models.insightface_root))
    image = np.zeros((200, 200, 3), np.uint8)
    kps = np.array([[70, 80], [130, 80], [100, 110], [75, 140], [125, 140]], np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ArcFaceEmbedder(ref).crop(image, kps)
    assert [str(w.message) for w in caught] == []
