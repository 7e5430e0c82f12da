"""FeatureDataset(position_encoding=...): the spherical angles or the head pose (SPEC §7)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MODEL, Extracted, Models, old_json_options

from featstore import FeatureDataset
from featstore.errors import InputError
from featstore.store import Store
from featstore.trainer_json.export import export_json


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def exported_3d(extracted: Extracted, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exported_3d") / "valid_images_3d.json"
    export_json(extracted.store, out=out, format="3d")
    return out


def test_euler_angles_from_a_store_are_the_stored_pose_of_the_3d_selection(
    extracted: Extracted, exported_3d: Path, cache: Path
) -> None:
    data = FeatureDataset(extracted.store, position_encoding="euler_angles", cache_dir=cache)
    document = json.loads(exported_3d.read_bytes())
    assert data.identities == list(document)
    assert len(data) == sum(len(v["video_data"]) for v in document.values())
    stored = Store(extracted.store).sql(
        "SELECT euler_angles FROM valid_frames WHERE euler_angles IS NOT NULL "
        "ORDER BY identity, frame_index"
    )
    expected = np.array(stored.column("euler_angles").to_pylist(), np.float32)
    batch = data.__getitems__(list(range(len(data))))
    assert tuple(batch["position_encoding"].shape) == (len(data), 3)
    np.testing.assert_array_equal(batch["position_encoding"].numpy(), expected)
    np.testing.assert_array_equal(data[0]["position_encoding"].numpy(), expected[0])


def test_the_default_stays_the_spherical_angles(extracted: Extracted, cache: Path) -> None:
    data = FeatureDataset(extracted.store, cache_dir=cache, extra_fields=["euler_angles"])
    assert data.position_encoding == "spherical_angles"
    sample = data[0]
    assert tuple(sample["position_encoding"].shape) == (5,)
    assert tuple(sample["euler_angles"].shape) == (3,)
    assert tuple(data.__getitems__([0, 1])["position_encoding"].shape) == (2, 5)


def test_a_3d_json_gives_what_its_store_gives(
    extracted: Extracted, exported_3d: Path, cache: Path
) -> None:
    from_json = FeatureDataset(exported_3d, position_encoding="euler_angles", cache_dir=cache)
    from_store = FeatureDataset(
        extracted.store, position_encoding="euler_angles", cache_dir=cache / "s"
    )
    assert from_json.identities == from_store.identities
    everything = list(range(len(from_store)))
    a, b = from_json.__getitems__(everything), from_store.__getitems__(everything)
    for key in ("input_features", "position_encoding", "target_features"):
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
    assert a["person_name"] == b["person_name"]


def test_a_3d_json_has_no_spherical_angles(exported_3d: Path, cache: Path) -> None:
    with pytest.raises(InputError, match="has no spherical_angles .*a 3D JSON holds the head pose"):
        FeatureDataset(exported_3d, cache_dir=cache)


def test_a_new_format_json_has_no_pose(extracted: Extracted, tmp_path: Path, cache: Path) -> None:
    out = tmp_path / "valid_images.json"
    export_json(extracted.store, out=out)
    with pytest.raises(InputError, match="(?s)has no euler_angles .*--format 3d"):
        FeatureDataset(out, position_encoding="euler_angles", cache_dir=cache)


def test_an_unknown_encoding_is_refused(extracted: Extracted, cache: Path) -> None:
    with pytest.raises(InputError, match="position_encoding='yaw': choose one of"):
        FeatureDataset(extracted.store, position_encoding="yaw", cache_dir=cache)  # type: ignore[arg-type]


@pytest.mark.slow
def test_an_old_format_json_is_extracted_with_its_pose(
    extracted: Extracted, old_json: Path, models: Models, tmp_path: Path
) -> None:
    data = FeatureDataset(
        old_json,
        model=MODEL,
        position_encoding="euler_angles",
        cache_dir=tmp_path / "cache",
        **old_json_options(models),
    )
    assert data.source_format == "old-json"
    reference = FeatureDataset(
        extracted.store, position_encoding="euler_angles", cache_dir=tmp_path / "ref"
    )
    assert data.identities == reference.identities and len(data) == len(reference)
    everything = list(range(len(data)))
    got, want = data.__getitems__(everything), reference.__getitems__(everything)
    assert tuple(got["position_encoding"].shape) == (len(data), 3)
    # Same images and detector, so the same keypoints and poses (batches may round apart).
    torch.testing.assert_close(got["position_encoding"], want["position_encoding"])
