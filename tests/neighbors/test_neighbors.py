"""`find_neighbors` on a real extracted store with a copied identity and a copied frame."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import (
    ARCFACE,
    COPIED_FRAME,
    COPIED_IDENTITY,
    MODEL,
    Dataset,
    Extracted,
    Models,
    copy_store,
    run_extract,
)

from featstore.errors import InputError
from featstore.neighbors import find_neighbors
from featstore.store.neighbors import (
    NeighborsTable,
    copied_images,
    suspected_pairs,
)
from featstore.store.store import Store
from featstore.synthetic.images import generate_face_tree
from featstore.trainer_json.export import export_json

COPIED_FROM = "video/person_002/frame_0001.jpg"


@pytest.fixture(scope="module")
def searched(neighbors_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = copy_store(neighbors_store, tmp_path_factory.mktemp("searched") / "store")
    find_neighbors(store)
    return store


def test_the_copied_identity_is_its_originals_nearest(searched: Path) -> None:
    rows = Store(searched).sql(
        f"SELECT vector, neighbor, cosine FROM identity_neighbors "
        f"WHERE identity = '{COPIED_IDENTITY}' AND rank = 1 ORDER BY vector"
    )
    assert rows.column("vector").to_pylist() == ["face", "mean"]
    assert rows.column("neighbor").to_pylist() == ["person_001", "person_001"]
    assert min(rows.column("cosine").to_pylist()) > 0.9999
    with Store(searched).connect() as con:
        pairs, total = suspected_pairs(con, ARCFACE)
    assert (pairs[0].identity, pairs[0].other) == ("person_001", COPIED_IDENTITY)
    assert pairs[0].vectors == "face,mean"
    assert total == len(pairs)


def test_the_copied_frame_is_found_in_both_places(searched: Path) -> None:
    copied = f"video/person_003/{COPIED_FRAME}"
    rows = (
        Store(searched)
        .sql(
            f"SELECT other_path, other_identity, rank, cosine FROM duplicate_images "
            f"WHERE image_path = '{copied}' AND NOT same_identity ORDER BY rank"
        )
        .to_pylist()
    )
    assert rows[0]["other_path"] == COPIED_FROM and rows[0]["other_identity"] == "person_002"
    assert rows[0]["rank"] == 1 and rows[0]["cosine"] > 0.9999
    with Store(searched).connect() as con:
        copies, _ = copied_images(con, ARCFACE, same_identity=False)
    found = {(c.path, c.other_path) for c in copies if c.cosine > 0.9999}
    assert (COPIED_FROM, copied) in found
    assert ("face/person_001.jpg", f"face/{COPIED_IDENTITY}.jpg") in found
    # The copied folder's frames: each pair once, whichever identity sorts first.
    assert {f"video/person_001/frame_000{i}.jpg" for i in range(3)} <= {a for a, _ in found}


def test_every_image_has_its_nearest_in_both_scopes(searched: Path) -> None:
    counts = (
        Store(searched)
        .sql(
            "SELECT scope, count(*) AS n, count(DISTINCT image_path) AS images "
            "FROM image_neighbors "
            "WHERE rank = 1 GROUP BY scope ORDER BY scope"
        )
        .to_pylist()
    )
    images = (
        Store(searched)
        .sql(f"SELECT count(*) AS n FROM images WHERE model = '{ARCFACE}' AND status = 'ok'")
        .to_pylist()[0]["n"]
    )
    assert [(c["scope"], c["n"], c["images"]) for c in counts] == [
        ("other", images, images),
        ("same", images, images),
    ]


def test_a_rerun_on_an_unchanged_store_commits_nothing(
    neighbors_store: Path, tmp_path: Path
) -> None:
    store = copy_store(neighbors_store, tmp_path / "store")
    first = find_neighbors(store, k=3)
    table = NeighborsTable(Store(store).location, ARCFACE)
    versions = len(table.open().history())
    again = find_neighbors(store, k=3)
    assert first.committed and not again.committed
    assert again.version == first.version and len(table.open().history()) == versions
    assert again.identities == first.identities and again.methods == first.methods
    # Another K is another result; so is a new version of the model's table.
    assert find_neighbors(store, k=2).committed
    Store(store).model(ARCFACE).delta.delete("identity = 'person_004'")  # rows change
    redone = find_neighbors(store, k=2)
    assert redone.committed and redone.model_version > first.model_version
    stored = table.read()
    assert stored is not None and stored.settings["key"]["model_version"] == redone.model_version
    assert redone.identities == first.identities - 1


def test_where_macros_drop_the_duplicates(searched: Path, tmp_path: Path) -> None:
    out = tmp_path / "kept.json"
    export_json(searched, out=out, model=MODEL, where="NOT duplicate_image(image_path)")
    kept = json.loads(out.read_text())
    paths = {f["image_path"] for v in kept.values() for f in v["video_data"]}
    assert not any(
        p.endswith(COPIED_FRAME) or p.endswith("person_002/frame_0001.jpg") for p in paths
    )
    export_json(searched, out=out, model=MODEL, where="NOT duplicate_identity(identity, 0.9999)")
    assert sorted(json.loads(out.read_text())) == [
        "person_000",
        "person_002",
        "person_003",
        "person_004",
    ]
    # The threshold of the run when none is given: the stand-in puts every pair above 0.5.
    with Store(searched).connect() as con:
        flagged = con.execute(
            "SELECT count(*) FROM identities WHERE duplicate_identity(identity)"
        ).fetchone()
    assert flagged is not None and flagged[0] > 2


def test_a_store_without_arcface_says_which_model_to_add(extracted: Extracted) -> None:
    with pytest.raises(InputError, match=r"(?s)no ArcFace model.*--model arcface"):
        find_neighbors(extracted.store)


def test_a_dinov2_model_warns_that_it_finds_copies(searched: Path) -> None:
    result = find_neighbors(searched, model=MODEL)
    assert (
        result.warnings
        and "copied and near-identical images, not the same person" in (result.warnings[0])
    )
    assert result.threshold == 0.95


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": 6}, r"(?s)--k 6: model arcface_buffalo_l has 6 identities.*--k 5 or less"),
        ({"k": 0}, "at least 1"),
        ({"threshold": 1.5}, r"--threshold 1.5: a cosine lies in \[-1, 1\]"),
        ({"copy_threshold": -2.0}, r"--copy-threshold -2.0"),
        ({"threshold": float("nan")}, "must be a number"),
    ],
)
def test_bad_options_are_refused(searched: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        find_neighbors(searched, **kwargs)


def test_a_model_with_one_identity_is_refused(tmp_path: Path, models: Models) -> None:
    face_dir, video_dir = generate_face_tree(
        tmp_path, identities=1, frames_per_identity=2, no_face_every=0
    )
    store = tmp_path / "store"
    run_extract(Dataset(tmp_path, face_dir, video_dir), store, models, models=["arcface"])
    with pytest.raises(InputError, match="1 identity with a usable embedding.*at least two"):
        find_neighbors(store)
    assert not (store / f"neighbors={ARCFACE}").exists()
    shutil.rmtree(store)


def test_the_approximate_path_finds_the_copies_and_reports_recall(
    neighbors_store: Path, tmp_path: Path
) -> None:
    store = copy_store(neighbors_store, tmp_path / "store")
    result = find_neighbors(store, exact_limit=4)  # IVF for every search
    # IVF, or exact where its sample search got as slow as exact before reaching 0.99
    # (timing: on 24 identities either may happen).
    for method in result.methods.values():
        assert method.startswith(("approximate (IVF", "exact (flat inner product): approximate"))
    assert "recall" in result.methods["identity face"]
    with Store(store).connect() as con:
        pairs, _ = suspected_pairs(con, ARCFACE)
        copies, _ = copied_images(con, ARCFACE, same_identity=False)
    assert (pairs[0].identity, pairs[0].other) == ("person_001", COPIED_IDENTITY)
    copied = (COPIED_FROM, f"video/person_003/{COPIED_FRAME}")
    assert copied in {(c.path, c.other_path) for c in copies}
