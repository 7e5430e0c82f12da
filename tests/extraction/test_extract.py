"""featstore.extract end to end: the store's schema and rows, bad inputs, provenance, errors.

Most tests read the session's one extraction of the main dataset (`extracted`, see
conftest.py); tests that extract again use the 8-image `mini_dataset` to stay fast.
"""

from __future__ import annotations

import os
import stat
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from conftest import (
    AWKWARD_FRAMES,
    DIM,
    FRAMES,
    IDENTITIES,
    MODEL,
    MODEL_REG,
    Dataset,
    Extracted,
    Models,
    copy_store,
    fast_runtime,
    run_extract,
)
from store_checks import identities, table_rows

from featstore.errors import (
    InputError,
    ModelLoadError,
    ModelNotFoundError,
    ProvenanceMismatchError,
    StoreError,
)
from featstore.extraction.geometry import average_angle, landmarks_3d, spherical_angles
from featstore.extraction.images import IMAGE_EXTENSIONS
from featstore.extraction.pipeline import row_schema
from featstore.store import Store
from featstore.store.format import delta_schema, store_schema
from featstore.synthetic.awkward import (
    AWKWARD_IDENTITIES,
    BAD_FRAME_STATUS,
    BAD_FRAMES_IDENTITY,
    FACE_WITHOUT_VIDEO,
    VIDEO_WITHOUT_FACE,
)
from featstore.synthetic.dinov2_checkpoint import official_state_dict_shapes
from featstore.synthetic.images import identity_name

ALL_IDENTITIES = sorted(
    [identity_name(i) for i in range(IDENTITIES)]
    + list(AWKWARD_IDENTITIES)
    + [BAD_FRAMES_IDENTITY, FACE_WITHOUT_VIDEO, VIDEO_WITHOUT_FACE]
)
DETECTION_COLUMNS = ("landmarks_2d", "landmarks_3d", "box", "det_score")


# helpers ------------------------------------------------------------------------------


def data_files(store: Path, model: str = MODEL) -> list[str]:
    """The identities of the model's table (one entry per identity, like v1's files)."""
    return identities(store, model)


def read_rows(store: Path, model: str = MODEL) -> list[dict[str, Any]]:
    """Every row of a model, from the files its table's log lists, read with pyarrow."""
    return table_rows(store, model).to_pylist()


def table_files(store: Path, model: str = MODEL) -> list[str]:
    return Store(store).model(model).files


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder` with its bytes and mtime."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def input_images(dataset: Dataset) -> set[str]:
    return {
        p.relative_to(dataset.root).as_posix()
        for p in dataset.root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    }


@pytest.fixture(scope="module")
def rows(extracted: Extracted) -> list[dict[str, Any]]:
    return read_rows(extracted.store)


@pytest.fixture(scope="module")
def by_path(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["image_path"]: r for r in rows}


@pytest.fixture(scope="module")
def mini_store(
    tmp_path_factory: pytest.TempPathFactory, mini_dataset: Dataset, models: Models
) -> Path:
    """The mini dataset extracted once (read-only: copy before modifying)."""
    store = tmp_path_factory.mktemp("mini_store") / "store"
    run_extract(mini_dataset, store, models)
    return store


# schema and rows ----------------------------------------------------------------------


def test_every_file_has_the_store_schema(extracted: Extracted) -> None:
    assert data_files(extracted.store) == ALL_IDENTITIES
    expected = store_schema(DIM)
    assert expected.field("features").type == pa.list_(pa.float32(), DIM)
    assert pa.types.is_fixed_size_list(expected.field("landmarks_2d").type)
    # Delta has no fixed-size list: the files hold plain lists, the views cast them back.
    stored = delta_schema(row_schema(DIM))
    for f in table_files(extracted.store):
        schema = pq.read_schema(f).remove_metadata()
        assert schema.names == stored.names, f
        for field in stored:
            assert schema.field(field.name).type == field.type, (f, field.name)
    described = Store(extracted.store).sql("DESCRIBE images").to_pylist()
    types = {r["column_name"]: r["column_type"] for r in described}
    assert types["identity"] == "VARCHAR" and types["frame_index"] == "INTEGER"
    assert types["features"] == f"FLOAT[{DIM}]"
    assert types["landmarks_3d"] == "FLOAT[3][5]"


def test_one_row_per_image(dataset: Dataset, rows: list[dict[str, Any]]) -> None:
    paths = [r["image_path"] for r in rows]
    assert len(paths) == len(set(paths)) == 52
    assert set(paths) == input_images(dataset)
    assert {r["model"] for r in rows} == {MODEL}
    assert sorted({r["identity"] for r in rows}) == ALL_IDENTITIES
    faces = [r for r in rows if r["role"] == "face"]
    assert sorted(r["identity"] for r in faces) == sorted(
        set(ALL_IDENTITIES) - {VIDEO_WITHOUT_FACE}
    )


def test_bad_frames_get_their_status(by_path: dict[str, dict[str, Any]]) -> None:
    found = {
        name: by_path[f"video/{BAD_FRAMES_IDENTITY}/{name}"]["status"] for name in BAD_FRAME_STATUS
    }
    assert found == BAD_FRAME_STATUS
    large = by_path[f"video/{BAD_FRAMES_IDENTITY}/f07_large_3000x2400.jpg"]
    assert (large["width"], large["height"]) == (3000, 2400)


def test_two_faces_keep_the_larger_one(by_path: dict[str, dict[str, Any]]) -> None:
    # f08: a large face centred at x=160 and a smaller one at x=480 in a 640-wide frame.
    x1, _, x2, _ = by_path[f"video/{BAD_FRAMES_IDENTITY}/f08_two_faces.jpg"]["box"]
    assert (x1 + x2) / 2 == pytest.approx(160, abs=25)


def test_unreadable_rows(rows: list[dict[str, Any]]) -> None:
    unreadable = [r for r in rows if r["status"] == "unreadable"]
    assert len(unreadable) == 3
    for r in unreadable:
        assert r["error"] and "\n" not in r["error"], r
        assert r["features"] is None
        assert r["spherical_angles"] is None and r["avg_angle"] is None
        for column in DETECTION_COLUMNS:
            assert r[column] is None, (r["image_path"], column)
    empty = next(r for r in unreadable if r["image_path"].endswith("f00_zero_bytes.jpg"))
    assert "0 bytes" in empty["error"]


def test_no_face_rows(rows: list[dict[str, Any]]) -> None:
    no_face = [r for r in rows if r["status"] == "no_face"]
    # f09_dark and the 4th frame of each synthetic identity (background only).
    assert sorted(r["image_path"] for r in no_face) == sorted(
        [f"video/{BAD_FRAMES_IDENTITY}/f09_dark.jpg"]
        + [f"video/{identity_name(i)}/frame_{FRAMES - 1:04d}.jpg" for i in range(IDENTITIES)]
    )
    for r in no_face:
        assert r["error"] == "no face found at det_thresh 0.5"
        assert r["features"] is None
        assert r["spherical_angles"] is None and r["avg_angle"] is None
        for column in DETECTION_COLUMNS:
            assert r[column] is None, (r["image_path"], column)


def test_ok_rows(rows: list[dict[str, Any]]) -> None:
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 52 - 3 - 4
    for r in ok:
        assert r["error"] is None
        features = np.array(r["features"], dtype=np.float64)
        assert features.shape == (DIM,)
        assert np.linalg.norm(features) == pytest.approx(1.0, abs=1e-5)
        assert np.array(r["landmarks_2d"]).shape == (5, 2)
        assert np.array(r["landmarks_3d"]).shape == (5, 3)
        x1, y1, x2, y2 = r["box"]
        assert x1 < x2 and y1 < y2
        assert 0.5 <= r["det_score"] <= 1.0


def test_angles_exactly_for_frames_of_identities_with_an_ok_frontal_image(
    rows: list[dict[str, Any]],
) -> None:
    face_ok = {r["identity"] for r in rows if r["role"] == "face" and r["status"] == "ok"}
    assert VIDEO_WITHOUT_FACE not in face_ok
    with_angles = 0
    for r in rows:
        expected = r["role"] == "frame" and r["status"] == "ok" and r["identity"] in face_ok
        assert (r["spherical_angles"] is not None) == expected, r["image_path"]
        assert (r["avg_angle"] is not None) == expected, r["image_path"]
        with_angles += expected
    assert with_angles == 32 - 1  # every ok frame but the one of `only_video`
    assert any(abs(r["avg_angle"]) > 0.5 for r in rows if r["avg_angle"] is not None)


def test_avg_angle_is_the_mean_of_the_angles(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        if r["spherical_angles"] is not None:
            mean = average_angle(np.array(r["spherical_angles"], dtype=np.float32))
            assert r["avg_angle"] == pytest.approx(mean, rel=1e-6, abs=1e-5)


def test_geometry_recomputes_from_the_stored_values(rows: list[dict[str, Any]]) -> None:
    faces = {r["identity"]: r for r in rows if r["role"] == "face"}
    for r in rows:
        if r["box"] is None:
            continue
        box = np.array(r["box"], dtype=np.float32)
        lm2d = np.array(r["landmarks_2d"], dtype=np.float32)
        lm3d = landmarks_3d(box, lm2d)
        np.testing.assert_allclose(np.array(r["landmarks_3d"]), lm3d, rtol=0, atol=1e-6)
        if r["spherical_angles"] is not None:
            face = faces[r["identity"]]
            angles = spherical_angles(
                landmarks_3d(
                    np.array(face["box"], np.float32), np.array(face["landmarks_2d"], np.float32)
                ),
                np.array(face["landmarks_2d"], np.float32),
                lm3d,
                lm2d,
            )
            np.testing.assert_allclose(np.array(r["spherical_angles"]), angles, rtol=0, atol=1e-4)


def test_frame_index_follows_file_names(rows: list[dict[str, Any]]) -> None:
    frames: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["role"] == "face":
            assert r["frame_index"] is None
        else:
            frames[r["identity"]].append(r)
    for identity, items in frames.items():
        items.sort(key=lambda r: r["frame_index"])
        assert [r["frame_index"] for r in items] == list(range(len(items))), identity
        names = [r["image_path"].rsplit("/", 1)[1] for r in items]
        assert names == sorted(names), identity
    assert len(frames[BAD_FRAMES_IDENTITY]) == len(BAD_FRAME_STATUS)


def test_image_paths_are_relative_with_forward_slashes(
    dataset: Dataset, rows: list[dict[str, Any]]
) -> None:
    for r in rows:
        path = r["image_path"]
        assert "\\" not in path and not Path(path).is_absolute()
        assert (dataset.root / path).is_file()
        if r["role"] == "frame":
            assert path.startswith(f"video/{r['identity']}/")
        else:
            assert path.rsplit(".", 1)[0] == f"face/{r['identity']}"


# awkward identities -------------------------------------------------------------------


@pytest.mark.parametrize("identity", AWKWARD_IDENTITIES)
def test_awkward_identity_round_trips_through_pyarrow(extracted: Extracted, identity: str) -> None:
    everything = table_rows(extracted.store)
    table = everything.filter(pc.equal(everything.column("identity"), identity))
    assert table.num_rows == 1 + AWKWARD_FRAMES
    assert table.column("identity").to_pylist() == [identity] * table.num_rows
    assert table.column("model").to_pylist() == [MODEL] * table.num_rows


@pytest.mark.parametrize("options", ["", ", hive_partitioning = false"])
def test_awkward_identities_round_trip_through_duckdb(extracted: Extracted, options: str) -> None:
    # Other engines read a table through the files its log lists (never a folder glob).
    files = ", ".join("'" + f.replace("'", "''") + "'" for f in table_files(extracted.store))
    source = f"read_parquet([{files}]{options})"
    with duckdb.connect() as con:
        found = con.execute(
            f"SELECT identity, typeof(identity), model, count(*) FROM {source} GROUP BY ALL"
        ).fetchall()
        assert sorted(i for i, _, _, _ in found) == ALL_IDENTITIES
        assert {t for _, t, _, _ in found} == {"VARCHAR"}
        assert {m for _, _, m, _ in found} == {MODEL}
        for identity in AWKWARD_IDENTITIES:
            (n,) = con.execute(
                f"SELECT count(*) FROM {source} WHERE identity = ?", [identity]
            ).fetchone() or (0,)
            assert n == 1 + AWKWARD_FRAMES, identity
        (zeros,) = con.execute(
            f"SELECT count(*) FROM {source} WHERE identity = '007'"
        ).fetchone() or (0,)
        assert zeros == 1 + AWKWARD_FRAMES


# summary ------------------------------------------------------------------------------


def test_summary_reports_orphans_and_counts(
    extracted: Extracted, rows: list[dict[str, Any]]
) -> None:
    s = extracted.summary
    assert s.store == extracted.store
    assert s.models == (MODEL,)
    assert s.face_without_video == (FACE_WITHOUT_VIDEO,)
    assert s.video_without_face == (VIDEO_WITHOUT_FACE,)
    assert s.identities_in_input == s.identities_extracted == len(ALL_IDENTITIES)
    assert s.images_extracted == 52
    assert s.run_counts == {"ok": 45, "no_face": 4, "unreadable": 3}
    counts = s.store_counts[MODEL]
    assert counts.identities == len(ALL_IDENTITIES)
    # valid: frontal ok, video folder and an ok frame: not only_face nor only_video.
    assert counts.valid_identities == len(ALL_IDENTITIES) - 2
    assert counts.faces == {"ok": 13}
    assert counts.frames == {"ok": 32, "no_face": 4, "unreadable": 3}
    text = s.format()
    assert "ok 45, no_face 4, unreadable 3" in text
    assert f"frontal image but no video folder: {FACE_WITHOUT_VIDEO}" in text
    assert f"video folder but no frontal image: {VIDEO_WITHOUT_FACE}" in text
    assert text.splitlines()[-1] == f"store: {extracted.store}"


# provenance ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "key", "old", "new"),
    [
        ({"det_thresh": 0.6}, "detector.det_thresh", "0.5", "0.6"),
        ({"precision": "bf16"}, "precision", '"fp32"', '"bf16"'),
    ],
)
def test_different_settings_are_refused_and_leave_the_store_alone(
    tmp_path: Path,
    mini_dataset: Dataset,
    mini_store: Path,
    models: Models,
    change: dict[str, Any],
    key: str,
    old: str,
    new: str,
) -> None:
    store = copy_store(mini_store, tmp_path / "store")
    before = snapshot(store)
    if "det_thresh" in change:
        kwargs: dict[str, Any] = {"detector": models.detector(**change)}
    else:
        kwargs = {"runtime": fast_runtime(**change)}
    with pytest.raises(ProvenanceMismatchError, match=key) as info:
        run_extract(mini_dataset, store, models, **kwargs)
    message = str(info.value)
    line = next(line for line in message.splitlines() if key in line)
    assert old in line and new in line, message
    assert line == f"  {key}: stored {old} -> now {new}"
    # Only what differs: one line per changed setting, no whole object printed.
    assert len([ln for ln in message.splitlines() if " -> now " in ln]) == 1, message
    assert snapshot(store) == before


def test_overwrite_replaces_rows_made_with_other_settings(
    tmp_path: Path, mini_dataset: Dataset, mini_store: Path, models: Models
) -> None:
    store = copy_store(mini_store, tmp_path / "store")
    summary = run_extract(
        mini_dataset, store, models, detector=models.detector(det_thresh=0.6), overwrite=True
    )
    assert summary.images_extracted == 8
    provenance = Store(store).model(MODEL).provenance
    assert provenance["detector"]["det_thresh"] == 0.6
    no_face = [r for r in read_rows(store) if r["status"] == "no_face"]
    assert {r["error"] for r in no_face} == {"no face found at det_thresh 0.6"}
    # The same settings again: nothing to do.
    again = run_extract(mini_dataset, store, models, detector=models.detector(det_thresh=0.6))
    assert again.images_extracted == 0


def _compare_models(store: Path) -> None:
    a, b = read_rows(store, MODEL), read_rows(store, MODEL_REG)
    assert len(a) == len(b) == 8
    for ra, rb in zip(a, b, strict=True):
        assert (ra["model"], rb["model"]) == (MODEL, MODEL_REG)
        for column in ("identity", "image_path", "status", "error", "frame_index", "avg_angle"):
            assert ra[column] == rb[column], column
        for column in (*DETECTION_COLUMNS, "spherical_angles"):
            assert ra[column] == rb[column], column
        if ra["status"] == "ok":
            assert len(ra["features"]) == len(rb["features"]) == DIM
            assert ra["features"] != rb["features"]


def test_two_models_in_one_pass(tmp_path: Path, mini_dataset: Dataset, models: Models) -> None:
    store = tmp_path / "store"
    summary = run_extract(
        mini_dataset,
        store,
        models,
        models=[MODEL, MODEL_REG],
        weights={MODEL: models.weights, MODEL_REG: models.weights_reg},
    )
    assert summary.models == (MODEL, MODEL_REG)
    assert summary.images_extracted == 8  # decoded and detected once for both
    assert sum(summary.run_counts.values()) == 8
    assert set(summary.store_counts) == {MODEL, MODEL_REG}
    for model in (MODEL, MODEL_REG):
        assert Store(store).model(model).provenance["model"] == model
        assert len(data_files(store, model)) == 2
    _compare_models(store)


def test_adding_a_model_keeps_the_first_one(
    tmp_path: Path, mini_dataset: Dataset, mini_store: Path, models: Models
) -> None:
    store = copy_store(mini_store, tmp_path / "store")
    before = snapshot(store / f"model={MODEL}")
    summary = run_extract(
        mini_dataset,
        store,
        models,
        models=[MODEL, MODEL_REG],
        weights={MODEL: models.weights, MODEL_REG: models.weights_reg},
    )
    assert summary.images_extracted == 8
    assert snapshot(store / f"model={MODEL}") == before
    _compare_models(store)


# errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["--face-dir", "--video-dir"])
def test_missing_input_folder(
    tmp_path: Path, mini_dataset: Dataset, models: Models, option: str
) -> None:
    missing = tmp_path / "no such folder"
    face = missing if option == "--face-dir" else mini_dataset.face_dir
    video = missing if option == "--video-dir" else mini_dataset.video_dir
    with pytest.raises(InputError, match=f"{option} {missing} does not exist"):
        run_extract(Dataset(tmp_path, face, video), tmp_path / "store", models)
    assert not (tmp_path / "store").exists()


def test_store_that_is_a_file(tmp_path: Path, mini_dataset: Dataset, models: Models) -> None:
    store = tmp_path / "store"
    store.write_text("not a store")
    with pytest.raises(StoreError, match="exists and is not a folder"):
        run_extract(mini_dataset, store, models)
    assert store.read_text() == "not a store"


def test_store_under_a_file(tmp_path: Path, mini_dataset: Dataset, models: Models) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot write to --store .*file/store"):
        run_extract(mini_dataset, tmp_path / "file" / "store", models)


def test_read_only_store(tmp_path: Path, mini_dataset: Dataset, models: Models) -> None:
    store = tmp_path / "store"
    store.mkdir()
    store.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(store, os.W_OK):
            pytest.skip("permissions are not enforced for this user (root)")
        with pytest.raises(StoreError, match="cannot write to --store"):
            run_extract(mini_dataset, store, models)
    finally:
        store.chmod(stat.S_IRWXU)


def test_non_store_folder_is_refused(tmp_path: Path, mini_dataset: Dataset, models: Models) -> None:
    store = tmp_path / "photos"
    store.mkdir()
    (store / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(StoreError, match="not a featstore store"):
        run_extract(mini_dataset, store, models)
    assert [p.name for p in store.iterdir()] == ["holiday.jpg"]


def test_missing_weights_lists_every_place(
    tmp_path: Path, mini_dataset: Dataset, models: Models
) -> None:
    cache = Path(torch.hub.get_dir()) / "checkpoints" / f"{MODEL}_pretrain.pth"
    assert str(cache).startswith(os.environ["TORCH_HOME"])  # never the real cache
    with pytest.raises(ModelNotFoundError, match="not found. Looked at") as info:
        run_extract(mini_dataset, tmp_path / "store", models, weights={})
    message = str(info.value)
    assert str(cache) in message
    assert f"https://dl.fbaipublicfiles.com/dinov2/{MODEL}/{MODEL}_pretrain.pth" in message
    assert "FEATSTORE_NO_DOWNLOAD" in message


def test_missing_weights_file(tmp_path: Path, mini_dataset: Dataset, models: Models) -> None:
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(ModelNotFoundError, match=f"not found: {missing}"):
        run_extract(mini_dataset, tmp_path / "store", models, weights={MODEL: missing})


def test_unknown_model(tmp_path: Path, mini_dataset: Dataset, models: Models) -> None:
    with pytest.raises(InputError, match="'dinov2_vitq14' is not a DINOv2 model"):
        run_extract(mini_dataset, tmp_path / "store", models, models=["dinov2_vitq14"], weights={})


def _vitb_shaped(path: Path) -> Path:
    """The non-block tensors of a vitb14 checkpoint (enough to be the wrong model, small)."""
    shapes = official_state_dict_shapes("dinov2_vitb14")
    torch.save({k: torch.zeros(s) for k, s in shapes.items() if not k.startswith("blocks.")}, path)
    return path


@pytest.mark.parametrize("wrong", ["reg", "vitb"])
def test_checkpoint_of_another_model(
    tmp_path: Path, mini_dataset: Dataset, models: Models, wrong: str
) -> None:
    if wrong == "reg":
        weights = models.weights_reg
        match = r"does not hold dinov2_vits14 weights:\n  unexpected keys \(1\): register_tokens"
    else:
        weights = _vitb_shaped(tmp_path / "vitb.pth")
        match = (
            r"does not hold dinov2_vits14 weights:\n  shape mismatch .*"
            r"cls_token: expected \[1, 1, 384\] found \[1, 1, 768\]"
        )
    store = tmp_path / "store"
    with pytest.raises(ModelLoadError, match=match):
        run_extract(mini_dataset, store, models, weights={MODEL: weights})
    assert data_files(store) == []
    # The failed run wrote no rows, so the right checkpoint is then accepted.
    assert run_extract(mini_dataset, store, models).images_extracted == 8
