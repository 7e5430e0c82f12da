"""The seed's 3D JSON (valid_images_3d.json, SPEC §7): export, import, validate, round trip."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from click.testing import CliRunner
from conftest import DIM, MODEL, Dataset, Extracted, Models, run_extract
from featstore_cli.json_commands import export_json as export_command
from featstore_cli.json_commands import import_json as import_command
from featstore_cli.validate_command import validate as validate_command
from store_checks import drop_columns, table_rows

from featstore.errors import InputError, StoreError
from featstore.extraction import rows as rows_module
from featstore.extraction.pose import NoPose
from featstore.store import Store
from featstore.trainer_json.export import export_json
from featstore.trainer_json.importer import import_json
from featstore.trainer_json.validate import validate_json

IDENTITY_KEYS = [
    "face_image_path",
    "face_features",
    "face_landmarks_2d",
    "face_landmarks_3d",
    "face_box",
    "video_data",
    "total_video_images",
    "valid_video_images",
    "feature_dim",
    "dinov2_model",
    "face_euler_angles",
    "face_rotation_matrix",
]
FRAME_KEYS = [
    "image_path",
    "features",
    "landmarks_2d",
    "landmarks_3d",
    "box",
    "euler_angles",
    "rotation_matrix",
]
POSE_COLUMNS = ("euler_angles", "rotation_matrix", "pose_landmarks_3d")


def read_rows(store: Path) -> list[dict[str, Any]]:
    return table_rows(store).to_pylist()


def f32(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.float32)


@pytest.fixture(scope="module")
def half_posed(
    tmp_path_factory: pytest.TempPathFactory, mini_dataset: Dataset, models: Models
) -> Path:
    """The mini dataset extracted with every second image's pose failing (read-only)."""
    store = tmp_path_factory.mktemp("half_posed") / "store"
    real = rows_module.solve_pose
    calls: list[int] = []

    def every_second_fails(landmarks: Any, width: int | None, height: int | None) -> Any:
        calls.append(1)
        if len(calls) % 2 == 0:
            return NoPose("degenerate keypoints: all five on one line")
        return real(landmarks, width, height)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rows_module, "solve_pose", every_second_fails)
        run_extract(mini_dataset, store, models)
    return store


def expected_selection(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """SPEC §7: identity -> its posed ok frames, for identities whose frontal is posed and ok."""

    def usable(r: dict[str, Any]) -> bool:
        return r["status"] == "ok" and r["euler_angles"] is not None

    out = {}
    for identity in sorted({r["identity"] for r in rows}):
        mine = [r for r in rows if r["identity"] == identity]
        face = [r for r in mine if r["role"] == "face" and usable(r)]
        frames = sorted(
            (r for r in mine if r["role"] == "frame" and usable(r)),
            key=lambda r: r["frame_index"],
        )
        if face and frames:
            out[identity] = [face[0], *frames]
    return out


def test_export_3d_is_the_seeds_format_and_floats_are_the_stored_float32(
    extracted: Extracted, tmp_path: Path
) -> None:
    out = tmp_path / "valid_images_3d.json"
    summary = export_json(extracted.store, out=out, format="3d")
    document = json.loads(out.read_bytes())
    expected = expected_selection(read_rows(extracted.store))
    assert list(document) == sorted(expected) and len(document) == summary.identities > 0
    totals = {
        r["identity"]: n
        for r in Store(extracted.store)
        .sql("SELECT identity, frames_total AS n FROM identities")
        .to_pylist()
        for n in [r["n"]]
    }
    for identity, value in document.items():
        assert list(value) == IDENTITY_KEYS
        assert all(list(frame) == FRAME_KEYS for frame in value["video_data"])
        face, *frames = expected[identity]
        assert value["total_video_images"] == totals[identity]
        assert value["valid_video_images"] == len(value["video_data"]) == len(frames)
        assert (value["feature_dim"], value["dinov2_model"]) == (DIM, MODEL)
        assert (out.parent / value["face_image_path"]).is_file()
        pairs = [
            (value["face_features"], face["features"]),
            (value["face_landmarks_2d"], face["landmarks_2d"]),
            (value["face_landmarks_3d"], face["pose_landmarks_3d"]),  # the posed mean face
            (value["face_box"], face["box"]),
            (value["face_euler_angles"], face["euler_angles"]),
            (value["face_rotation_matrix"], face["rotation_matrix"]),
        ]
        for frame, row in zip(value["video_data"], frames, strict=True):
            assert frame["image_path"].endswith(row["image_path"].split("/")[-1])
            pairs += [
                (frame["features"], row["features"]),
                (frame["landmarks_3d"], row["pose_landmarks_3d"]),
                (frame["euler_angles"], row["euler_angles"]),
                (frame["rotation_matrix"], row["rotation_matrix"]),
            ]
        for written, stored in pairs:
            # json.loads gives float64s; each must be the stored float32 exactly.
            np.testing.assert_array_equal(f32(written), f32(stored))


def test_images_without_a_pose_are_left_out(half_posed: Path, tmp_path: Path) -> None:
    rows = read_rows(half_posed)
    assert any(r["status"] == "ok" and r["euler_angles"] is None for r in rows)
    out = tmp_path / "valid_images_3d.json"
    export_json(half_posed, out=out, format="3d")
    document = json.loads(out.read_bytes())
    expected = expected_selection(rows)
    assert list(document) == sorted(expected)
    for identity, value in document.items():
        names = [Path(f["image_path"]).name for f in value["video_data"]]
        assert names == [Path(r["image_path"]).name for r in expected[identity][1:]]
    # The new format still has every ok frame: the pose only decides the 3D file.
    new = tmp_path / "valid_images.json"
    export_json(half_posed, out=new)
    assert sum(len(v["video_data"]) for v in json.loads(new.read_bytes()).values()) > sum(
        len(v["video_data"]) for v in document.values()
    )


def test_where_and_base_dir(extracted: Extracted, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "valid_images_3d.json"
    out.parent.mkdir()
    base = extracted.dataset.root
    everything = export_json(extracted.store, out=out, format="3d")
    yaws = Store(extracted.store).sql("SELECT euler_angles[1] AS yaw FROM valid_frames")
    middle = float(np.median(yaws.column("yaw").to_numpy()))
    where = f"euler_angles[1] > {middle!r}"
    kept = export_json(extracted.store, out=out, format="3d", base_dir=base, where=where)
    assert 0 < kept.frames < everything.frames
    document = json.loads(out.read_bytes())
    for value in document.values():
        assert all(f["euler_angles"][0] > middle for f in value["video_data"])
        for path in [value["face_image_path"], *(f["image_path"] for f in value["video_data"])]:
            assert not os.path.isabs(path) and (base / path).is_file()


def test_the_stable_pose_selects_frames_but_stays_out_of_the_file(
    extracted: Extracted, tmp_path: Path
) -> None:
    """featstore-pose-sqpnp-v1 (docs/pose.md) is a column to select by, never a key: the
    3D file is the seed's, with face000-pose-v1."""
    out = tmp_path / "valid_images_3d.json"
    everything = export_json(extracted.store, out=out, format="3d")
    text = out.read_text("utf-8")
    assert "sqpnp" not in text
    turns = Store(extracted.store).sql("SELECT sqpnp_euler_angles[2] AS t FROM valid_frames")
    middle = float(np.median(turns.column("t").to_numpy()))
    where = f"sqpnp_euler_angles[2] > {middle!r}"
    kept = export_json(extracted.store, out=out, format="3d", where=where)
    assert 0 < kept.frames < everything.frames


@pytest.mark.parametrize("indent", [None, 2])
def test_export_import_export_is_byte_identical(
    extracted: Extracted, tmp_path: Path, indent: int | None
) -> None:
    first = tmp_path / "valid_images_3d.json"
    export_json(extracted.store, out=first, format="3d", indent=indent)
    original = first.read_bytes()
    summary = import_json(first, store=tmp_path / "imported")
    again = export_json(tmp_path / "imported", out=first, format="3d", indent=indent)
    assert first.read_bytes() == original
    assert (again.identities, again.frames) == (summary.identities, summary.frames)
    assert Store(tmp_path / "imported").model(MODEL).provenance["json_format"] == "3d"


def test_imported_3d_rows_fill_the_pose_columns(extracted: Extracted, tmp_path: Path) -> None:
    first = tmp_path / "valid_images_3d.json"
    export_json(extracted.store, out=first, format="3d")
    import_json(first, store=tmp_path / "imported")
    document = json.loads(first.read_bytes())
    for row in read_rows(tmp_path / "imported"):
        value = document[row["identity"]]
        if row["role"] == "face":
            source = {k.removeprefix("face_"): v for k, v in value.items()}
        else:
            source = value["video_data"][row["frame_index"]]
        np.testing.assert_array_equal(f32(row["euler_angles"]), f32(source["euler_angles"]))
        np.testing.assert_array_equal(f32(row["rotation_matrix"]), f32(source["rotation_matrix"]))
        np.testing.assert_array_equal(f32(row["pose_landmarks_3d"]), f32(source["landmarks_3d"]))
        # Not in the 3D file: null rather than invented.
        assert row["landmarks_3d"] is None and row["spherical_angles"] is None
        assert row["avg_angle"] is None


def test_round_trip_through_the_cli(extracted: Extracted, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "valid_images_3d.json"
    args = ["--store", str(extracted.store), "--out", str(out), "--format", "3d", "--indent", "2"]
    result = runner.invoke(export_command, args)
    assert result.exit_code == 0, result.output
    assert "(3d format" in result.output
    result = runner.invoke(import_command, [str(out), "--store", str(tmp_path / "store")])
    assert result.exit_code == 0, result.output
    again = tmp_path / "again.json"
    result = runner.invoke(
        export_command,
        [
            "--store",
            str(tmp_path / "store"),
            "--out",
            str(again),
            "--format",
            "3d",
            "--indent",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert again.read_bytes().replace(b"../", b"") == out.read_bytes().replace(b"../", b"")
    result = runner.invoke(validate_command, [str(out)])
    assert result.exit_code == 0, result.output
    assert "3d format" in result.output


def test_a_store_without_pose_columns_is_refused(extracted: Extracted, tmp_path: Path) -> None:
    import shutil

    store = Path(shutil.copytree(extracted.store, tmp_path / "store"))
    drop_columns(store, list(POSE_COLUMNS))
    with pytest.raises(StoreError, match="(?s)has no head pose columns .*extract it again"):
        export_json(store, out=tmp_path / "out.json", format="3d")
    with pytest.raises(StoreError, match=r"Hint: `featstore derive --store .*` adds them"):
        export_json(store, out=tmp_path / "out.json", format="3d")
    export_json(store, out=tmp_path / "out.json")  # the other formats do not need them


# --- bad 3D files --------------------------------------------------------------------


def document_3d(identities: int = 2, frames: int = 2, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    return {
        f"p{i}": {
            "face_image_path": f"face/p{i}.jpg",
            "face_features": r(DIM),
            "face_landmarks_2d": r(5, 2),
            "face_landmarks_3d": r(5, 3),
            "face_box": r(4),
            "video_data": [
                {
                    "image_path": f"video/p{i}/{j}.jpg",
                    "features": r(DIM),
                    "landmarks_2d": r(5, 2),
                    "landmarks_3d": r(5, 3),
                    "box": r(4),
                    "euler_angles": r(3),
                    "rotation_matrix": r(3, 3),
                }
                for j in range(frames)
            ],
            "total_video_images": frames,
            "valid_video_images": frames,
            "feature_dim": DIM,
            "dinov2_model": MODEL,
            "face_euler_angles": r(3),
            "face_rotation_matrix": r(3, 3),
        }
        for i in range(identities)
    }


def write(path: Path, document: Any) -> Path:
    """`document` as the seed's writer spells it: each float32 as its exact double
    (`tolist()`), which is also how export-json writes floats (issue 23, point 12)."""
    path.write_bytes(orjson.dumps(document, default=lambda array: array.tolist()))
    return path


def test_a_synthetic_3d_file_round_trips_byte_for_byte(tmp_path: Path) -> None:
    path = write(tmp_path / "valid_images_3d.json", document_3d(3, 4))
    original = path.read_bytes()
    import_json(path, store=tmp_path / "store")
    export_json(tmp_path / "store", out=path, format="3d")
    assert path.read_bytes() == original


def test_import_names_the_identity_and_field_of_a_bad_rotation_matrix(tmp_path: Path) -> None:
    document = document_3d()
    document["p1"]["video_data"][1]["rotation_matrix"] = [[1.0, 0.0], [0.0, 1.0]]
    path = write(tmp_path / "bad.json", document)
    with pytest.raises(
        InputError,
        match=r"identity 'p1', video_data\[1\]\.rotation_matrix: expected 3 lists of 3 "
        r"numbers, found a list of 2",
    ):
        import_json(path, store=tmp_path / "store")
    assert not (tmp_path / "store").exists()


def test_import_names_a_missing_pose_key(tmp_path: Path) -> None:
    document = document_3d()
    del document["p1"]["face_rotation_matrix"]
    path = write(tmp_path / "bad.json", document)
    with pytest.raises(
        InputError, match="identity 'p1', face_rotation_matrix: expected the field to be present"
    ):
        import_json(path, store=tmp_path / "store")


def test_import_refuses_a_file_mixing_formats(tmp_path: Path) -> None:
    document = document_3d()
    for frame in document["p1"]["video_data"]:
        del frame["euler_angles"], frame["rotation_matrix"]
        frame["spherical_angles"], frame["avg_angle"] = [0.0] * 5, 0.0
    del document["p1"]["face_euler_angles"], document["p1"]["face_rotation_matrix"]
    path = write(tmp_path / "mixed.json", document)
    with pytest.raises(InputError, match="identity 'p1', its fields: expected the 3D format"):
        import_json(path, store=tmp_path / "store")


def test_validate_accepts_a_3d_file(tmp_path: Path) -> None:
    report = validate_json(write(tmp_path / "ok.json", document_3d()), check_paths=False)
    assert report.ok, [p.format() for p in report.problems]
    assert report.format == "3d"
    assert report.describe().startswith("3d format, 2 identities, 4 frames")


@pytest.mark.parametrize(
    ("mend", "expected"),
    [
        (
            lambda d: d["p1"].__setitem__("face_rotation_matrix", [[1, 0, 0], [0, 1, 0]]),
            "p1: face_rotation_matrix: expected [3][3] finite numbers, found an array of 2 "
            "[Q3-shape]",
        ),
        (
            lambda d: d["p0"]["video_data"][1].__setitem__("rotation_matrix", [[1, 0], [0, 1]]),
            "p0: video_data[1].rotation_matrix: expected [3][3] finite numbers, found an array "
            "of 2 [Q3-shape]",
        ),
        (
            lambda d: d["p1"].pop("face_euler_angles"),
            "p1: face_euler_angles: expected a field 'face_euler_angles', found no such field "
            "[Q3-missing-field]",
        ),
        (
            lambda d: d["p0"]["video_data"][0].pop("euler_angles"),
            "p0: video_data[0].euler_angles: expected a field 'euler_angles', found no such "
            "field [Q3-missing-field]",
        ),
    ],
)
def test_validate_names_the_identity_and_field(tmp_path: Path, mend: Any, expected: str) -> None:
    document = json.loads(orjson.dumps(document_3d(), option=orjson.OPT_SERIALIZE_NUMPY))
    mend(document)
    report = validate_json(write(tmp_path / "bad.json", document), check_paths=False)
    assert [p.format() for p in report.problems] == [expected]
