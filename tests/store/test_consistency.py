"""identity_consistency: ArcFace cosines per frame, and filtering export and Dataset with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import ARCFACE, INTRUDER, MODEL, Extracted

from featstore.dataset.feature_dataset import FeatureDataset
from featstore.errors import InputError
from featstore.store import Store
from featstore.store.consistency import DEFAULT_THRESHOLD, VIEW, create_identity_consistency
from featstore.trainer_json.export import export_json

# Where the synthetic recogniser puts a differently tinted face: well below its own
# identity's frames (~0.7-0.98), see test_the_intruder_is_the_worst_frame.
CUT = 0.6


def _view(store: Path, model: str | None) -> list[dict]:
    with Store(store).connect(model=model) as con:
        return (
            con.sql(f"SELECT * FROM {VIEW} ORDER BY identity, frame_index").to_arrow_table()
        ).to_pylist()


def _expected(store: Path) -> dict[str, dict]:
    """The cosines computed in numpy from the stored embeddings."""
    rows = (
        Store(store)
        .sql(
            f"SELECT identity, role, image_path, features FROM images "
            f"WHERE model = '{ARCFACE}' AND status = 'ok' ORDER BY identity, frame_index"
        )
        .to_pylist()
    )
    out = {}
    for identity in {r["identity"] for r in rows}:
        face = next(
            np.asarray(r["features"])
            for r in rows
            if r["identity"] == identity and r["role"] == "face"
        )
        frames = [r for r in rows if r["identity"] == identity and r["role"] == "frame"]
        vectors = np.array([r["features"] for r in frames], dtype=np.float64)
        mean = vectors.mean(axis=0)
        for r, v in zip(frames, vectors, strict=True):
            face_cos = v @ face / np.linalg.norm(v) / np.linalg.norm(face)
            out[r["image_path"]] = {
                "face_cosine": face_cos,
                "mean_cosine": v @ mean / np.linalg.norm(v) / np.linalg.norm(mean),
                "frames": len(frames),
            }
    return out


@pytest.mark.parametrize("model", [None, MODEL, ARCFACE])
def test_view_numbers_match_numpy(consistency_store: Path, model: str | None) -> None:
    view, expected = _view(consistency_store, model), _expected(consistency_store)
    assert {r["image_path"] for r in view} == set(expected)  # ok frames only, no_face absent
    for row in view:
        want = expected[row["image_path"]]
        assert row["model"] == ARCFACE
        assert row["face_cosine"] == pytest.approx(want["face_cosine"], abs=1e-6)
        assert row["mean_cosine"] == pytest.approx(want["mean_cosine"], abs=1e-6)
        assert row["frames"] == want["frames"]
        assert row["threshold"] == DEFAULT_THRESHOLD
        assert row["below_threshold"] == (row["face_cosine"] < DEFAULT_THRESHOLD)
    for identity in {r["identity"] for r in view}:
        mine = [r for r in view if r["identity"] == identity]
        below = sum(r["face_cosine"] < DEFAULT_THRESHOLD for r in mine)
        assert {(r["frames_below"], r["share_below"]) for r in mine} == {(below, below / len(mine))}


def test_the_intruder_is_the_worst_frame(consistency_store: Path) -> None:
    view = sorted(_view(consistency_store, None), key=lambda r: r["face_cosine"])
    assert view[0]["image_path"].endswith(INTRUDER)
    assert view[0]["face_cosine"] < CUT < view[1]["face_cosine"]


def test_threshold_is_a_parameter(consistency_store: Path) -> None:
    with Store(consistency_store).connect() as con:
        assert create_identity_consistency(con, "images", threshold=CUT)
        flagged = con.execute(
            f"SELECT image_path, share_below FROM {VIEW} WHERE below_threshold"
        ).fetchall()
        macro = con.execute("SELECT model FROM frames WHERE suspicious_frame(image_path)")
        assert sorted(macro.fetchall()) == [(ARCFACE,), (MODEL,)]
        mixed = "SELECT DISTINCT identity FROM frames WHERE suspicious_identity(identity, {})"
        assert con.execute(mixed.format(0.2)).fetchall() == [("person_000",)]
        assert con.execute(mixed.format(0.25)).fetchall() == []
        assert not create_identity_consistency(con, None)
    assert [p for p, _ in flagged] == [f"video/person_000/{INTRUDER}"]
    assert flagged[0][1] == pytest.approx(1 / 4)


def test_no_view_without_an_arcface_model(extracted: Extracted) -> None:
    with Store(extracted.store).connect() as con:
        views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    assert "frames" in views and VIEW not in views


DROP = f"NOT suspicious_frame(image_path, min_cosine := {CUT})"


def test_default_threshold_flags_nothing_here(consistency_store: Path, tmp_path: Path) -> None:
    # The synthetic intruder is at ~0.5: above 0.3, so the default macro keeps every frame.
    everything = export_json(consistency_store, out=tmp_path / "all.json", model=MODEL)
    kept = export_json(
        consistency_store,
        out=tmp_path / "kept.json",
        model=MODEL,
        where="NOT suspicious_frame(image_path)",
    )
    assert kept.frames == everything.frames


def test_export_json_where_drops_the_intruder(consistency_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "valid.json"
    kept = export_json(consistency_store, out=out, model=MODEL, where=DROP)
    everything = export_json(consistency_store, out=tmp_path / "all.json", model=MODEL)
    assert kept.frames == everything.frames - 1
    paths = [f["image_path"] for f in json.loads(out.read_text())["person_000"]["video_data"]]
    assert paths and not any(p.endswith(INTRUDER) for p in paths)


def test_dataset_where_drops_the_intruder(consistency_store: Path, tmp_path: Path) -> None:
    everything = FeatureDataset(consistency_store, model=MODEL, cache_dir=tmp_path)
    kept = FeatureDataset(consistency_store, model=MODEL, where=DROP, cache_dir=tmp_path)
    assert len(kept) == len(everything) - 1
    arcface = FeatureDataset(consistency_store, model=ARCFACE, cache_dir=tmp_path)
    assert len(arcface) == len(everything)


def test_export_json_refuses_an_arcface_model(consistency_store: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="never replace DINOv2") as info:
        export_json(consistency_store, out=tmp_path / "arcface.json", model=ARCFACE)
    assert "Hint:" in str(info.value)
    assert not (tmp_path / "arcface.json").exists()


def test_the_one_dinov2_model_beside_arcface_needs_no_model_option(
    consistency_store: Path, tmp_path: Path
) -> None:
    """ArcFace is never exported, so export-json, the report and the Dataset pick the
    store's one DINOv2 model without --model; two DINOv2 models still need it."""
    from featstore.report.build import read_report

    out = tmp_path / "v.json"
    assert export_json(consistency_store, out=out).model == MODEL
    assert json.loads(out.read_text())
    assert read_report(consistency_store).model.name == MODEL
    assert FeatureDataset(consistency_store, cache_dir=tmp_path / "cache").model == MODEL
    assert Store(consistency_store).feature_model(ARCFACE).name == ARCFACE  # named: as asked
    with pytest.raises(Exception, match="choose one with model="):
        Store(consistency_store).model(None)  # query/info keep asking
