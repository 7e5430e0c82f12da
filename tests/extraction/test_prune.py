"""`featstore prune`: identities whose inputs are gone leave every table of the store in
one commit each (DINOv2, ArcFace, the neighbors tables), time travel keeps them; a dry run
by default; folders that are missing or empty are refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import ARCFACE, MODEL, Dataset, Models, run_extract
from featstore_cli.main import main

import featstore
from featstore.errors import InputError
from featstore.extraction.prune import prune
from featstore.store import Store

GONE = "person_002"


def _cli(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _identities(store: Path, model: str, version: int | None = None) -> set[str]:
    rows = Store(store).sql("SELECT DISTINCT identity FROM images", model=model, version=version)
    return set(rows.column("identity").to_pylist())


def _moved_copy(neighbors_store: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """The neighbors store and its dataset copied elsewhere (so --rebase is needed)."""
    root = tmp_path / "moved"
    shutil.copytree(neighbors_store.parent, root)
    found = _cli("neighbors", "--store", root / "store")  # the ArcFace model's table
    assert found.exit_code == 0, found.output
    return root / "face", root / "video", root / "store"


def test_prune_removes_deleted_people_from_every_table_in_one_commit_each(
    neighbors_store: Path, tmp_path: Path
) -> None:
    face, video, store = _moved_copy(neighbors_store, tmp_path)
    before = {m: Store(store).model(m).version for m in (MODEL, ARCFACE)}
    assert GONE in _identities(store, MODEL)
    paths = Store(store).sql(f"SELECT count(*) AS n FROM image_neighbors WHERE identity = '{GONE}'"
                             f" OR other_identity = '{GONE}'")  # fmt: skip
    assert paths["n"][0].as_py() > 0
    (face / f"{GONE}.jpg").unlink()
    shutil.rmtree(video / GONE)
    args = ("prune", "--face-dir", face, "--video-dir", video, "--store", store)

    refused = _cli(*args)  # the base dir moved: refused unless --rebase
    assert refused.exit_code == 1 and "add --rebase" in refused.output, refused.output
    assert "was extracted with base dir" in refused.output
    assert "nothing was removed" in refused.output

    dry = _cli(*args, "--rebase")
    assert dry.exit_code == 0, dry.output
    assert f"1 identity without inputs: {GONE}" in dry.output, dry.output
    assert f"model {MODEL}: would remove 1 identity, 4 rows" in dry.output, dry.output
    assert f"model {ARCFACE}: would remove 1 identity, 4 rows" in dry.output, dry.output
    assert "dry run: nothing removed; add --apply" in dry.output
    assert {m: Store(store).model(m).version for m in before} == before  # nothing committed

    done = _cli(*args, "--rebase", "--apply")
    assert done.exit_code == 0, done.output
    for model, version in before.items():
        assert f"model {model}: removed 1 identity, 4 rows (version {version + 1})" in done.output
        assert Store(store).model(model).version == version + 1  # one commit
        assert GONE not in _identities(store, model)
        assert GONE in _identities(store, model, version)  # time travel keeps them
        history = _cli("history", "--store", store, "--model", model, "--limit", "1").output
        assert "prune" in history and "        4" in history, history  # 4 rows removed
    assert f"neighbors of {ARCFACE}: removed" in done.output, done.output
    assert "naming them" in done.output and "`featstore neighbors` computes" in done.output
    left = Store(store).sql(f"SELECT count(*) AS n FROM image_neighbors WHERE identity = '{GONE}'"
                            f" OR other_identity = '{GONE}'")  # fmt: skip
    assert left["n"][0].as_py() == 0
    # The export no longer names the deleted person (validate failed on its missing paths).
    out = tmp_path / "train.json"
    exported = _cli("export-json", "--store", store, "--model", MODEL, "--out", out)
    assert exported.exit_code == 0, exported.output
    assert GONE not in out.read_text("utf-8")

    again = _cli(*args, "--rebase", "--apply")
    assert again.exit_code == 0, again.output
    assert "nothing to remove: every identity of the store has inputs (5 identities found); " \
        "nothing committed." in again.output  # fmt: skip
    assert Store(store).model(MODEL).version == before[MODEL] + 1


def test_extract_names_prune_in_its_note(
    mini_dataset: Dataset, models: Models, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    shutil.copytree(mini_dataset.root, root)
    data = Dataset(root, root / "face", root / "video")
    store = tmp_path / "store"
    run_extract(data, store, models)
    (data.face_dir / "person_001.jpg").unlink()
    shutil.rmtree(data.video_dir / "person_001")
    note = run_extract(data, store, models).format()
    assert "until `featstore prune` (with the same --face-dir, --video-dir and --store)" in note
    result = featstore.prune(data.face_dir, data.video_dir, store, apply=True)  # public name
    assert result.identities == ("person_001",)
    assert _identities(store, MODEL) == {"person_000"}
    assert "no inputs any more" not in run_extract(data, store, models).format()


def test_prune_refuses_folders_that_look_unmounted(
    mini_dataset: Dataset, models: Models, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    shutil.copytree(mini_dataset.root, root)
    data = Dataset(root, root / "face", root / "video")
    store = tmp_path / "store"
    run_extract(data, store, models)
    version = Store(store).model(MODEL).version

    missing = _cli("prune", "--face-dir", tmp_path / "gone" / "face", "--video-dir",
                   tmp_path / "gone" / "video", "--store", store, "--apply")  # fmt: skip
    assert missing.exit_code == 1
    assert "does not exist. That looks like an unmounted disk" in missing.output, missing.output
    assert "prune removes nothing" in missing.output

    for folder in (data.face_dir, data.video_dir):  # an empty mount point
        shutil.rmtree(folder)
        folder.mkdir()
    with pytest.raises(InputError, match=r"so every one of the store's 2 identities would be "
                       r"removed\. An unmounted disk"):  # fmt: skip
        prune(data.face_dir, data.video_dir, store, apply=True)
    assert Store(store).model(MODEL).version == version
    assert _identities(store, MODEL) == {"person_000", "person_001"}

    no_store = _cli("prune", "--face-dir", data.face_dir, "--video-dir", data.video_dir,
                    "--store", tmp_path / "nowhere")  # fmt: skip
    assert no_store.exit_code == 1 and "nowhere" in no_store.output, no_store.output
