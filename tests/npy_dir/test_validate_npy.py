"""`featstore validate DIR`: the npy training directory, its rerun damage, and no false alarm."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import Models
from featstore_cli.main import main
from npy_trees import edge_tree, extract_arcface

from featstore.npy_dir.export import export_npy
from featstore.npy_dir.validate import validate_npy_dir


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, models: Models) -> Path:
    root = tmp_path_factory.mktemp("npy_validate")
    store = extract_arcface(edge_tree(root / "tree"), root / "store", models)
    export_npy(store, out=root / "dir")
    return root / "dir"


def _copy(exported: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "dir"
    shutil.copytree(exported, folder)
    return folder


def _edit(folder: Path, name: str, change) -> None:  # type: ignore[no-untyped-def]
    data = json.loads((folder / name).read_text(encoding="utf-8"))
    change(data)
    (folder / name).write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def test_an_export_passes(exported: Path) -> None:
    report = validate_npy_dir(exported)
    assert report.ok and not report.notes
    assert report.rows == {"front": 6, "video": 14} and report.feature_dim == 512


def test_a_fresh_seed_directory_passes_with_a_note(exported: Path, tmp_path: Path) -> None:
    folder = _copy(exported, tmp_path)
    _edit(folder, "video_metadata.json", lambda d: d.update(landmarks_3d_original=[]))
    report = validate_npy_dir(folder)
    assert report.ok
    assert [n.field for n in report.notes] == ["landmarks_3d_original"]
    result = CliRunner().invoke(main, ["validate", str(folder)])
    assert result.exit_code == 0, result.output
    assert "note: video_metadata.json: landmarks_3d_original" in result.output
    assert f"OK: {folder}: npy training directory (6 front rows, 14 video rows, 512 dims)" in (
        result.output
    )


def test_normalised_keypoints_stored_as_originals_are_found(exported: Path, tmp_path: Path) -> None:
    """The seed's rerun: the keypoints file's rows become the 'original' landmarks."""
    folder = _copy(exported, tmp_path)
    keypoints = np.load(folder / "video_keypoints.npy").tolist()
    _edit(folder, "video_metadata.json", lambda d: d.update(landmarks_3d_original=keypoints))
    report = validate_npy_dir(folder)
    assert not report.ok
    (problem,) = report.problems
    assert problem.file == "video_metadata.json" and problem.field == "landmarks_3d_original"
    assert "14 rows that do not" in problem.actual and "run again" in problem.hint
    result = CliRunner().invoke(main, ["validate", str(folder)])
    assert result.exit_code == 1 and "1 problem in" in result.output


def test_a_persons_frames_twice_are_found(exported: Path, tmp_path: Path) -> None:
    folder = _copy(exported, tmp_path)

    def twice(d: dict) -> None:  # type: ignore[type-arg]
        d["metadata"][-1] = d["metadata"][0]

    _edit(folder, "video_metadata.json", twice)
    fields = {(p.field, p.expected) for p in validate_npy_dir(folder).problems}
    assert ("metadata[13]", "each image once") in fields
    assert ("metadata[13]", "each person's frames together") in fields


def test_nan_extra_files_and_counts_are_named(exported: Path, tmp_path: Path) -> None:
    folder = _copy(exported, tmp_path)
    features = np.load(folder / "front_feature.npy")
    features[2, 7] = np.nan
    np.save(folder / "front_feature.npy", features)
    (folder / "readme.txt").write_text("x")
    _edit(folder, "video_metadata.json", lambda d: d.update(num_samples=3))
    found = {(p.file, p.field) for p in validate_npy_dir(folder).problems}
    assert found == {
        ("front_feature.npy", "row 2"),
        ("readme.txt", "file"),
        ("video_metadata.json", "num_samples"),
    }
