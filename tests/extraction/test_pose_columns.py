"""The head pose columns of extracted rows (SPEC §7): values, nulls, provenance, summary."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import MODEL, Dataset, Extracted, Models, run_extract
from store_checks import table_rows

from featstore.extraction import rows as rows_module
from featstore.extraction.pose import POSE_DEFINITION, HeadPose, NoPose, solve_pose
from featstore.store import Store

POSE_COLUMNS = ("euler_angles", "rotation_matrix", "pose_landmarks_3d")


def read_rows(store: Path) -> list[dict[str, Any]]:
    return table_rows(store).to_pylist()


def test_pose_columns_recompute_from_the_stored_keypoints_and_size(extracted: Extracted) -> None:
    rows = read_rows(extracted.store)
    posed = 0
    for row in rows:
        if row["landmarks_2d"] is None:
            assert all(row[c] is None for c in POSE_COLUMNS), row["image_path"]
            continue
        pose = solve_pose(np.array(row["landmarks_2d"], np.float32), row["width"], row["height"])
        assert isinstance(pose, HeadPose), (row["image_path"], pose)
        for column, value in zip(
            POSE_COLUMNS, (pose.euler_angles, pose.rotation_matrix, pose.landmarks_3d), strict=True
        ):
            np.testing.assert_array_equal(
                np.array(row[column], np.float32), value.astype(np.float32)
            )
        posed += 1
    assert posed == sum(r["status"] == "ok" for r in rows) > 0


def test_the_views_type_the_pose_columns(extracted: Extracted) -> None:
    with Store(extracted.store).connect(model=MODEL) as con:
        types = {r[0]: r[1] for r in con.execute("DESCRIBE images").fetchall()}
        assert types["euler_angles"] == "FLOAT[3]"
        assert types["rotation_matrix"] == "FLOAT[3][3]"
        assert types["pose_landmarks_3d"] == "FLOAT[3][5]"
        yaw = con.execute("SELECT count(euler_angles[1]) FROM frames WHERE status = 'ok'")
        assert yaw.fetchall()[0][0] > 0


def test_the_provenance_names_the_pose_definition(extracted: Extracted) -> None:
    provenance = Store(extracted.store).model(MODEL).provenance
    assert provenance["pose_definition"] == POSE_DEFINITION == "face000-pose-v1"
    assert extracted.summary.without_pose == 0
    assert "head pose" not in extracted.summary.format()


def test_images_without_a_pose_are_null_counted_and_logged(
    tmp_path: Path,
    mini_dataset: Dataset,
    models: Models,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real = rows_module.solve_pose
    solved: list[int] = []

    def some_fail(landmarks: Any, width: int | None, height: int | None) -> Any:
        solved.append(1)
        if len(solved) % 2 == 0:
            return NoPose("degenerate keypoints: all five on one line")
        return real(landmarks, width, height)

    monkeypatch.setattr(rows_module, "solve_pose", some_fail)
    with caplog.at_level(logging.INFO, logger="featstore.extraction.rows"):
        summary = run_extract(mini_dataset, tmp_path / "store", models)
    rows = read_rows(tmp_path / "store")
    with_face = [r for r in rows if r["landmarks_2d"] is not None]
    without = [r for r in with_face if r["euler_angles"] is None]
    assert len(solved) == len(with_face)  # once per image
    assert len(without) == len(with_face) // 2 > 0
    assert summary.without_pose == len(without)
    assert f"{len(without)} images with a face have no head pose" in summary.format()
    for row in without:
        assert row["status"] == "ok" and row["features"] is not None  # the pose only is null
        assert row["rotation_matrix"] is None and row["pose_landmarks_3d"] is None
        assert any(
            row["image_path"].split("/")[-1] in m and "all five on one line" in m
            for m in caplog.messages
        )
