"""FeatureDataset: the trainer's samples from a store or a JSON file, and their loading."""

from __future__ import annotations

import codecs
import gc
import math
import os
import pickle
import posixpath
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch
from conftest import (
    DIM,
    MODEL,
    MODEL_REG,
    Dataset,
    Extracted,
    Models,
    copy_store,
    old_json_options,
    run_extract,
)
from store_checks import table_rows
from torch.utils.data import DataLoader, DistributedSampler

import featstore.dataset.sources
import featstore.extraction.pipeline
from featstore import FeatureDataset, collate, split_by_identity
from featstore.dataset.feature_dataset import EXTRA_FIELDS, FeatureBatch
from featstore.errors import InputError, StoreError
from featstore.store import Store
from featstore.trainer_json.export import export_json

EXAMPLE = Path(__file__).parents[2] / "examples" / "train_minimal.py"
# The npy trainers' keypoints: tests/npy_dir/test_dataset_npy.py.
NPY_KEYPOINTS = ("keypoints_3d", "front_keypoints_3d")
STORE_FIELDS = tuple(f for f in EXTRA_FIELDS if f not in NPY_KEYPOINTS)
# A new-format JSON has no detector score and no head pose (the 3D JSON has the pose).
JSON_FIELDS = tuple(
    f for f in STORE_FIELDS if f not in ("det_score", "euler_angles", "pose_landmarks_3d")
)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def exported(extracted: Extracted, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dataset_json") / "valid_images.json"
    export_json(extracted.store, out=out)
    return out


def _expected_samples(store: Path) -> list[dict[str, Any]]:
    """The samples, computed from the Parquet files alone (no DuckDB, no featstore reader)."""
    rows = table_rows(store).to_pylist()
    base = Store(store).model(MODEL).provenance["base_dir"]
    faces = {r["identity"]: r for r in rows if r["role"] == "face" and r["status"] == "ok"}
    frames = [r for r in rows if r["role"] == "frame" and r["status"] == "ok"]
    frames = [r for r in frames if r["identity"] in faces]
    frames.sort(key=lambda r: (r["identity"], r["frame_index"]))
    samples = []
    for frame in frames:
        target = np.asarray(faces[frame["identity"]]["features"], np.float32)
        features = np.asarray(frame["features"], np.float32)
        samples.append(
            {
                "input_features": features,
                "position_encoding": np.asarray(frame["spherical_angles"], np.float32),
                "target_features": target,
                "target_residual": target - features,
                "person_name": frame["identity"],
                "image_path": posixpath.normpath(posixpath.join(base, frame["image_path"])),
                "det_score": np.float32(frame["det_score"]),
                "avg_angle": np.float32(frame["avg_angle"]),
                "box": np.asarray(frame["box"], np.float32),
                "landmarks_2d": np.asarray(frame["landmarks_2d"], np.float32),
                "landmarks_3d": np.asarray(frame["landmarks_3d"], np.float32),
                "euler_angles": np.asarray(frame["euler_angles"], np.float32),
                "pose_landmarks_3d": np.asarray(frame["pose_landmarks_3d"], np.float32),
            }
        )
    return samples


def _assert_same(a: Any, b: Any, key: str) -> None:
    if isinstance(a, str) or isinstance(b, str):
        assert a == b, key
    else:
        x, y = np.asarray(a), np.asarray(b)
        assert x.dtype == y.dtype == np.float32, key
        assert x.shape == y.shape and np.array_equal(x, y), key  # exact, not close


def _all_samples(dataset: FeatureDataset) -> Iterator[dict[str, Any]]:
    for i in range(len(dataset)):
        yield dataset[i]


def test_store_samples_are_the_valid_frames_in_order(extracted: Extracted, cache: Path) -> None:
    dataset = FeatureDataset(extracted.store, extra_fields=STORE_FIELDS, cache_dir=cache)
    expected = _expected_samples(extracted.store)
    assert len(dataset) == len(expected) > 0
    assert dataset.model == MODEL and dataset.dim == DIM
    for got, want in zip(_all_samples(dataset), expected, strict=True):
        assert set(got) == set(want)
        for key in want:
            _assert_same(got[key], want[key], key)
    names = [s["person_name"] for s in expected]
    assert dataset.identities == sorted(set(names))  # Python's (code point) order
    assert (
        len(dataset.identities)
        == Store(extracted.store)
        .sql("SELECT count(*) AS n FROM identities WHERE valid")
        .column("n")[0]
        .as_py()
    )


def test_sample_tensors(extracted: Extracted, cache: Path) -> None:
    dataset = FeatureDataset(extracted.store, cache_dir=cache)
    sample = dataset[0]
    assert set(sample) == {
        "input_features",
        "position_encoding",
        "target_features",
        "target_residual",
        "person_name",
    }
    assert sample["input_features"].shape == (DIM,) and sample["input_features"].dtype == (
        torch.float32
    )
    assert sample["position_encoding"].shape == (5,)
    assert isinstance(sample["person_name"], str)
    # Samples are the caller's own copies, as the seed's torch.FloatTensor were: changing
    # one changes neither the dataset nor the cache.
    for key in ("input_features", "position_encoding", "target_features"):
        sample[key][0] = 123.0
        assert dataset[0][key][0] != 123.0, key
    assert FeatureDataset(extracted.store, cache_dir=cache)[0]["input_features"][0] != 123.0


def test_getitems_is_the_stacked_samples(extracted: Extracted, cache: Path) -> None:
    dataset = FeatureDataset(extracted.store, extra_fields=STORE_FIELDS, cache_dir=cache)
    indices = [3, 0, len(dataset) - 1, 3, -1]
    batch = dataset.__getitems__(indices)
    assert isinstance(batch, FeatureBatch)
    samples = [dataset[i] for i in indices]
    for key, value in batch.items():
        if isinstance(value, list):
            assert value == [s[key] for s in samples]
        else:
            assert torch.equal(value, torch.stack([s[key] for s in samples])), key
    assert dataset[indices]["person_name"] == batch["person_name"]  # a list index: a batch
    with pytest.raises(IndexError, match="out of range"):
        dataset.__getitems__([0, len(dataset)])
    with pytest.raises(IndexError, match="out of range"):
        dataset[len(dataset)]
    # Any integer is one sample: numpy's, a negative one, and a bool (as int, not a mask).
    last = len(dataset) - 1
    for index, same in ((np.int64(3), 3), (-1, last), (True, 1), (np.int32(-2), last - 1)):
        assert torch.equal(dataset[index]["input_features"], dataset[same]["input_features"])
        assert dataset[index]["person_name"] == dataset[same]["person_name"]


def test_json_and_store_give_identical_samples(
    extracted: Extracted, exported: Path, cache: Path
) -> None:
    from_store = FeatureDataset(extracted.store, extra_fields=JSON_FIELDS, cache_dir=cache)
    from_json = FeatureDataset(exported, extra_fields=JSON_FIELDS, cache_dir=cache)
    assert from_json.source_format == "new-json" and from_json.model == MODEL
    assert len(from_json) == len(from_store)
    assert from_json.identities == from_store.identities
    for a, b in zip(_all_samples(from_store), _all_samples(from_json), strict=True):
        assert set(a) == set(b)
        for key in a:
            _assert_same(a[key], b[key], key)
    everything = list(range(len(from_store)))
    a, b = from_store.__getitems__(everything), from_json.__getitems__(everything)
    for key in a:
        assert (
            a[key] == b[key]
            if key in ("person_name", "image_path")
            else torch.equal(a[key], b[key])
        )


def test_where_filters_like_export_json(extracted: Extracted, tmp_path: Path) -> None:
    where = "frame_index = 0"
    out = tmp_path / "first_frames.json"
    export_json(extracted.store, out=out, where=where)
    from_store = FeatureDataset(extracted.store, where=where, cache_dir=tmp_path / "c")
    from_json = FeatureDataset(out, cache_dir=tmp_path / "c")
    all_frames = FeatureDataset(extracted.store, cache_dir=tmp_path / "c")
    assert 0 < len(from_store) < len(all_frames)
    assert len(from_store) == len(from_json) == len(from_store.identities)
    for a, b in zip(_all_samples(from_store), _all_samples(from_json), strict=True):
        for key in a:
            _assert_same(a[key], b[key], key)


def _batches(loader: DataLoader[Any]) -> list[dict[str, Any]]:
    return [dict(batch) for batch in loader]


def _assert_same_batches(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want) > 0
    for a, b in zip(got, want, strict=True):
        assert type(a) is type(b) and set(a) == set(b)
        for key in a:
            if isinstance(a[key], list):
                assert a[key] == b[key], key
            else:
                assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


PIN_WARNING = "ignore:'pin_memory' argument is set as true but no accelerator:UserWarning"


@pytest.mark.filterwarnings(PIN_WARNING)  # on a machine without a GPU nothing is pinned
def test_default_collate_gives_the_collate_fn_batches(extracted: Extracted, cache: Path) -> None:
    dataset = FeatureDataset(extracted.store, extra_fields=STORE_FIELDS, cache_dir=cache)

    def loader(**options: Any) -> DataLoader[Any]:
        generator = torch.Generator().manual_seed(5)
        return DataLoader(dataset, batch_size=3, shuffle=True, generator=generator, **options)

    default = list(loader())  # the trainer's own line: no collate_fn
    assert all(isinstance(batch, FeatureBatch) for batch in default)
    _assert_same_batches(_batches(loader()), _batches(loader(collate_fn=collate)))
    # pin_memory keeps the batch's type and values (and pins them where there is a GPU).
    pinned = list(loader(pin_memory=True))
    _assert_same_batches([dict(b) for b in pinned], _batches(loader(collate_fn=collate)))
    if torch.cuda.is_available():
        assert pinned[0]["input_features"].is_pinned()
    # A list of samples (e.g. from a wrapper dataset) is stacked, by either collate.
    samples = [dataset[0], dataset[1]]
    stacked = collate(samples)
    assert torch.equal(stacked["input_features"], dataset.__getitems__([0, 1])["input_features"])
    assert torch.equal(
        torch.utils.data.default_collate(samples)["input_features"], stacked["input_features"]
    )
    # The batch answers a sample number with that sample, as a list of samples would.
    batch = dataset.__getitems__([4, 2])
    sample = batch[1]
    for key, value in dataset[2].items():
        assert value == sample[key] if isinstance(value, str) else torch.equal(value, sample[key])
    picked = torch.utils.data.default_collate([batch[1], batch[0]])  # from a batch, reordered
    assert torch.equal(picked["input_features"], dataset.__getitems__([2, 4])["input_features"])
    with pytest.raises(IndexError, match="out of range"):
        batch[2]
    with pytest.raises(TypeError, match="field name"):
        batch[1.5]


def test_default_collate_with_subsets_and_distributed_sampler(
    extracted: Extracted, cache: Path
) -> None:
    dataset = FeatureDataset(extracted.store, extra_fields=("image_path",), cache_dir=cache)
    train, val = split_by_identity(dataset, val_fraction=0.3, seed=1)
    for subset in (train, val):
        _assert_same_batches(
            _batches(DataLoader(subset, batch_size=2)),
            _batches(DataLoader(subset, batch_size=2, collate_fn=collate)),
        )
    for rank in range(2):
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=3)
        _assert_same_batches(
            _batches(DataLoader(dataset, batch_size=3, sampler=sampler)),
            _batches(DataLoader(dataset, batch_size=3, sampler=sampler, collate_fn=collate)),
        )


@pytest.mark.slow
@pytest.mark.filterwarnings(PIN_WARNING)
@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_default_collate_in_workers(extracted: Extracted, cache: Path, start_method: str) -> None:
    dataset = FeatureDataset(extracted.store, extra_fields=("image_path",), cache_dir=cache)
    generator = torch.Generator().manual_seed(0)
    with_workers = DataLoader(
        dataset,
        batch_size=4,
        shuffle=True,
        generator=generator,
        num_workers=2,
        multiprocessing_context=start_method,
        pin_memory=True,
    )
    in_process = DataLoader(
        dataset,
        batch_size=4,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
        collate_fn=collate,
    )
    _assert_same_batches(_batches(with_workers), _batches(in_process))


def test_pickles_paths_not_arrays(extracted: Extracted, cache: Path) -> None:
    dataset = FeatureDataset(extracted.store, cache_dir=cache)
    data = pickle.dumps(dataset)
    assert len(data) < 4096  # no features travel to spawned workers
    copy = pickle.loads(data)
    assert torch.equal(copy[0]["input_features"], dataset[0]["input_features"])


def test_distributed_sampler_shares_the_samples(extracted: Extracted, cache: Path) -> None:
    dataset = FeatureDataset(extracted.store, extra_fields=("image_path",), cache_dir=cache)
    per_rank = []
    for rank in range(2):
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=3)
        loader = DataLoader(dataset, batch_size=3, sampler=sampler, collate_fn=collate)
        per_rank.append([p for batch in loader for p in batch["image_path"]])
    everything = dataset.__getitems__(list(range(len(dataset))))["image_path"]
    # DistributedSampler pads to a multiple of the ranks by repeating samples.
    assert len(per_rank[0]) == len(per_rank[1]) == (len(dataset) + 1) // 2
    assert set(per_rank[0]) | set(per_rank[1]) == set(everything)
    if len(dataset) % 2 == 0:
        assert not set(per_rank[0]) & set(per_rank[1])


def test_split_by_identity(extracted: Extracted, cache: Path) -> None:
    dataset = FeatureDataset(extracted.store, cache_dir=cache)
    train, val = split_by_identity(dataset, val_fraction=0.3, seed=7)
    names = lambda subset: {dataset[i]["person_name"] for i in subset.indices}  # noqa: E731
    assert names(train) and names(val) and not names(train) & names(val)
    assert sorted(list(train.indices) + list(val.indices)) == list(range(len(dataset)))
    assert len(names(val)) == round(0.3 * len(dataset.identities))
    again_train, _ = split_by_identity(dataset, val_fraction=0.3, seed=7)
    assert list(again_train.indices) == list(train.indices)
    other_train, _ = split_by_identity(dataset, val_fraction=0.3, seed=8)
    assert sorted(other_train.indices) == sorted(other_train.indices)
    # Subsets keep the batched path.
    batch = next(iter(DataLoader(val, batch_size=2, collate_fn=collate)))
    assert isinstance(batch, FeatureBatch) and batch["input_features"].shape == (2, DIM)
    train_all, val_none = split_by_identity(dataset, val_fraction=0.0)
    assert len(train_all) == len(dataset) and len(val_none) == 0
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(InputError, match="val_fraction"):
            split_by_identity(dataset, val_fraction=bad)


def test_cache_is_reused_then_invalidated(
    extracted: Extracted, models: Models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = copy_store(extracted.store, tmp_path / "store")
    first = FeatureDataset(store)
    assert first.cache_folder.parent == store / "_cache" / "datasets"  # beside the rows

    def no_rebuild(*args: object) -> None:
        raise AssertionError("the samples were read again though the store did not change")

    with monkeypatch.context() as patch:
        patch.setattr(featstore.dataset.sources, "read_store", no_rebuild)
        again = FeatureDataset(store)
    assert again.cache_folder == first.cache_folder

    # Replace one identity's rows: the next Dataset sees the new rows, the old cache goes.
    name = first.identities[0]
    rows = table_rows(store)
    rows = rows.filter(pc.equal(rows.column("identity"), name))
    features = np.asarray(rows.column("features").to_pylist(), dtype=object)
    changed = [None if f is None else [v + 1.0 for v in f] for f in features]
    rows = rows.set_column(
        rows.schema.get_field_index("features"),
        "features",
        pa.array(changed, rows.schema.field("features").type),
    )
    Store(store).model(MODEL).commit(rows, identities=[name], command="test")
    # A folder goes once no Dataset uses it (tests/dataset/test_cache_sharing.py).
    old_folder, old_sample = first.cache_folder, first[0]
    del first, again
    gc.collect()
    updated = FeatureDataset(store)
    assert updated.cache_folder != old_folder
    assert not old_folder.exists()
    assert torch.equal(updated[0]["input_features"], old_sample["input_features"] + 1.0)
    assert torch.equal(updated[0]["target_features"], old_sample["target_features"] + 1.0)


def test_read_only_store_caches_in_the_user_cache(
    extracted: Extracted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    store = copy_store(extracted.store, tmp_path / "store")
    monkeypatch.setattr("os.access", lambda path, mode: False)
    dataset = FeatureDataset(store)
    assert dataset.cache_folder.parent == tmp_path / "xdg" / "featstore" / "datasets"


@pytest.mark.slow
def test_old_format_json_is_extracted_once(
    extracted: Extracted,
    old_json: Path,
    models: Models,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`old_json` was opened once already, which extracted its images: opening it again
    reads them and runs no extraction."""

    def no_extraction(*args: object, **kwargs: object) -> None:
        raise AssertionError("extracted again though nothing changed")

    monkeypatch.setattr(featstore.extraction.pipeline, "run_local", no_extraction)
    options: dict[str, Any] = {**old_json_options(models), "cache_dir": tmp_path / "cache"}
    sidecar = old_json.with_name("old.json.featstore")
    partitions = {p: p.stat().st_mtime_ns for p in sidecar.rglob("*.parquet")}
    dataset = FeatureDataset(old_json, model=MODEL, extra_fields=("image_path",), **options)
    assert dataset.source_format == "old-json"
    assert (sidecar / "_featstore.json").is_file()
    assert {p: p.stat().st_mtime_ns for p in partitions} == partitions
    reference = FeatureDataset(extracted.store, extra_fields=("image_path",), cache_dir=tmp_path)
    assert dataset.identities == reference.identities and len(dataset) == len(reference)
    everything = list(range(len(dataset)))
    got, want = dataset.__getitems__(everything), reference.__getitems__(everything)
    assert got["image_path"] == want["image_path"]
    # Same images, same models; batches differ, so allow float rounding.
    torch.testing.assert_close(got["input_features"], want["input_features"])
    torch.testing.assert_close(got["position_encoding"], want["position_encoding"])


@pytest.mark.slow
def test_example_trainer_runs(extracted: Extracted, tmp_path: Path) -> None:
    store = copy_store(extracted.store, tmp_path / "store")  # the example caches into it
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--source", str(store), "--steps", "4", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert result.returncode == 0, result.stderr
    assert "step    1  train loss" in result.stdout
    found = re.search(r"after 4 steps .*validation loss (\S+),", result.stdout)
    assert found and math.isfinite(float(found.group(1))), result.stdout


# --- bad input: clear errors from the constructor ---------------------------------------


def _edited(exported: Path, tmp_path: Path, edit: Any) -> Path:
    document = orjson.loads(exported.read_bytes())
    edit(document)
    path = tmp_path / "edited.json"
    path.write_bytes(orjson.dumps(document))
    return path


def _first(document: dict[str, Any]) -> dict[str, Any]:
    return document[sorted(document)[0]]


def _second(document: dict[str, Any]) -> dict[str, Any]:
    return document[sorted(document)[1]]


def _other_model(document: dict[str, Any]) -> None:
    entry = _second(document)  # consistent in itself: 768 dims of dinov2_vitb14
    entry["face_features"] = entry["face_features"] * 2
    entry["feature_dim"] = 768
    entry["dinov2_model"] = "dinov2_vitb14"
    for frame in entry["video_data"]:
        frame["features"] = frame["features"] * 2


def _wrong_model_name(document: dict[str, Any]) -> None:
    _second(document)["dinov2_model"] = MODEL_REG  # same dim, another model


BAD_JSON = {
    # The messages are import-json's: both read the file with IdentityReader.
    "mixed dims": (_other_model, r"dinov2_model: expected 'dinov2_vits14' like identity '.*'"),
    "mixed models": (_wrong_model_name, r"\(one model per file\), found 'dinov2_vits14_reg'"),
    "frame of another dim": (
        lambda d: _second(d)["video_data"][0].update(features=[0.5] * 7),
        r"video_data\[0\]\.features: expected a list of 384 numbers, found a list of 7",
    ),
    "dim vs feature_dim": (
        lambda d: _first(d).update(feature_dim=768),
        r"model dinov2_vits14 makes 384-dim features, but the file's features have 768",
    ),
    "dim vs model": (
        lambda d: [e.update(dinov2_model="dinov2_vitb14") for e in d.values()],
        r"model dinov2_vitb14 makes 768-dim features, but the file's features have 384",
    ),
    "missing video_data": (
        lambda d: _second(d).pop("video_data"),
        r"video_data: expected the field to be present, found it missing",
    ),
    "no frames": (
        lambda d: _second(d).update(video_data=[], valid_video_images=0, total_video_images=0),
        r"has no frames \(video_data is empty",
    ),
    "frame without angles": (
        lambda d: _first(d)["video_data"][-1].pop("spherical_angles"),
        r"video_data\[\d+\]\.spherical_angles: expected the field to be present",
    ),
}


@pytest.mark.parametrize("case", BAD_JSON)
def test_bad_new_format_json(exported: Path, tmp_path: Path, case: str) -> None:
    edit, message = BAD_JSON[case]
    path = _edited(exported, tmp_path, edit)
    with pytest.raises(InputError, match=message) as info:
        FeatureDataset(path, cache_dir=tmp_path / "cache")
    assert "edited.json" in str(info.value)
    assert not list((tmp_path / "cache").glob("*/manifest.json"))  # nothing half-made kept


def test_bad_json_files(tmp_path: Path) -> None:
    cases = {
        "not.json": (b'{"a": ', r"is truncated: .* at line 1, column 7"),
        "broken.json": (
            b'{"a": {"b": [1,\n 2,]}}',
            r"is not valid JSON: trailing comma .* at line 2, column 3",
        ),
        "list.json": (b"[1, 2]", r"expected '\{' \(an object keyed by identity\), found '\['"),
        "empty.json": (b"{}", "holds no identity"),
        "scalar.json": (b'{"a": 3}', "identity 'a', its value: expected an object, found the n"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputError, match=message):
            FeatureDataset(tmp_path / name, cache_dir=tmp_path / "cache")


def test_a_utf8_bom_is_skipped_in_either_format(exported: Path, tmp_path: Path) -> None:
    # The one BOM rule (trainer_json.json_stream.bom_length), as import-json follows it.
    bom = tmp_path / "bom.json"
    bom.write_bytes(codecs.BOM_UTF8 + exported.read_bytes())
    with_bom = FeatureDataset(bom, cache_dir=tmp_path / "cache")
    plain = FeatureDataset(exported, cache_dir=tmp_path / "cache")
    assert (with_bom.identities, len(with_bom)) == (plain.identities, len(plain))
    old = tmp_path / "old.json"
    document = {"a": {"face_image_path": "face/a.jpg", "video_images": ["nowhere/0.jpg"]}}
    old.write_bytes(codecs.BOM_UTF8 + orjson.dumps(document))
    # Read as the old format (not refused as invalid JSON): its paths are checked.
    with pytest.raises(InputError, match=r"face_image_path 'face/a.jpg' does not resolve"):
        FeatureDataset(old, cache_dir=tmp_path / "cache")


def test_old_format_path_that_does_not_resolve(extracted: Extracted, tmp_path: Path) -> None:
    out = tmp_path / "old.json"
    export_json(extracted.store, out=out, format="old")
    document = orjson.loads(out.read_bytes())
    name = sorted(document)[0]
    document[name]["video_images"][0] = "nowhere/frame.jpg"
    out.write_bytes(orjson.dumps(document))
    with pytest.raises(InputError, match=r"video_images\[0\] 'nowhere/frame.jpg' does not resolve"):
        FeatureDataset(out, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "old.json.featstore").exists()  # refused before extracting


def test_bad_options(extracted: Extracted, exported: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(InputError, match="does not exist"):
        FeatureDataset(tmp_path / "missing", cache_dir=cache)
    with pytest.raises(InputError, match="unknown 'colour'; choose from"):
        FeatureDataset(extracted.store, extra_fields=["colour"], cache_dir=cache)
    with pytest.raises(InputError, match="det_score is not in the trainer's JSON"):
        FeatureDataset(exported, extra_fields=["det_score"], cache_dir=cache)
    with pytest.raises(InputError, match="where= filters a store's frames"):
        FeatureDataset(exported, where="frame_index = 0", cache_dir=cache)
    with pytest.raises(InputError, match="made with dinov2_vits14, not with model='dinov2_vitb14'"):
        FeatureDataset(exported, model="dinov2_vitb14", cache_dir=cache)
    with pytest.raises(InputError, match=r"gives no samples after where='frame_index > 1000'"):
        FeatureDataset(extracted.store, where="frame_index > 1000", cache_dir=cache)
    with pytest.raises(InputError, match="is not a usable filter over the frames"):
        FeatureDataset(extracted.store, where="no_such_column > 1", cache_dir=cache)
    with pytest.raises(StoreError, match="has no model 'dinov2_vitb14'"):
        FeatureDataset(extracted.store, model="dinov2_vitb14", cache_dir=cache)
    empty = tmp_path / "empty_store"
    empty.mkdir()
    (empty / "_featstore.json").write_text('{"format": "featstore-store", "version": 2}')
    with pytest.raises(StoreError, match="holds no model yet"):
        FeatureDataset(empty, cache_dir=cache)


@pytest.mark.slow
def test_two_models_need_model(mini_dataset: Dataset, models: Models, tmp_path: Path) -> None:
    store = tmp_path / "store"
    run_extract(
        mini_dataset,
        store,
        models,
        models=[MODEL, MODEL_REG],
        weights={MODEL: models.weights, MODEL_REG: models.weights_reg},
    )
    with pytest.raises(StoreError, match=r"holds 2 models .*choose one with model= \(CLI"):
        FeatureDataset(store, cache_dir=tmp_path / "cache")
    reg = FeatureDataset(store, model=MODEL_REG, cache_dir=tmp_path / "cache")
    plain = FeatureDataset(store, model=MODEL, cache_dir=tmp_path / "cache")
    assert reg.model == MODEL_REG and plain.model == MODEL and len(reg) == len(plain)
    assert not torch.equal(reg[0]["input_features"], plain[0]["input_features"])
    shutil.rmtree(tmp_path / "cache")
