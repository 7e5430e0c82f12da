"""What a careless command or an unlucky store does to version 2: outputs aimed into the
store, a damaged data file, leftovers of killed exports, names that look like temporaries."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import MODEL, Dataset, Extracted, Models, copy_store, run_extract
from featstore_cli.main import main
from store_checks import identities, store_files

from featstore.errors import StoreError
from featstore.store import Store
from featstore.store.query import count_rows
from featstore.trainer_json.export import export_json


def _cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    "command",
    [
        ["export-json", "--out", "{table}/x.json"],
        ["export-json", "--out", "{store}/_featstore.json"],
        ["report", "--out", "{table}/_delta_log/00000000000000000001.json"],
        ["query", "SELECT 1 AS one", "--format", "csv", "--output", "{table}/part-0.parquet"],
    ],
)
def test_no_output_lands_inside_the_store(
    extracted: Extracted, tmp_path: Path, command: list[str]
) -> None:
    store = copy_store(extracted.store, tmp_path / "store")
    before = store_files(store)
    table = store / f"model={MODEL}"
    argv = [a.format(store=store, table=table) for a in command]
    code, output = _cli(argv[0], "--store", store, *argv[1:])
    assert code in (1, 2), output
    assert "inside the store" in output and "Traceback" not in output
    assert store_files(store) == before
    assert count_rows(Store(store)) == count_rows(Store(extracted.store))


def test_a_damaged_data_file_is_named_with_what_to_do(extracted: Extracted, tmp_path: Path) -> None:
    store = copy_store(extracted.store, tmp_path / "store")
    victim = Path(Store(store).model(MODEL).files[0])
    victim.write_bytes(victim.read_bytes()[:100])  # truncated
    for argv in (["info"], ["query", "SELECT count(*) FROM images"]):
        code, output = _cli(argv[0], "--store", store, *argv[1:])
        assert code == 1, output
        assert "is damaged" in output and victim.name in output, output
        assert "Traceback" not in output and "_duckdb" not in output
    with pytest.raises(StoreError, match="is damaged"):
        export_json(store, out=tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def test_export_removes_what_a_killed_export_left(extracted: Extracted, tmp_path: Path) -> None:
    out = tmp_path / "valid.json"
    dead = tmp_path / "valid.json.tmp-999999999"  # no such pid
    dead.write_bytes(b'{"half": ')
    live = tmp_path / f"valid.json.tmp-{os.getppid()}"  # a live process's export: kept
    live.write_bytes(b"")
    export_json(extracted.store, out=out)
    assert out.is_file() and not dead.exists() and live.exists()


def test_an_identity_named_like_a_temporary_file(
    tmp_path: Path, mini_dataset: Dataset, models: Models
) -> None:
    """v1 deleted `*.tmp-<host>-<pid>-*` partitions as stale temporaries and then failed on
    every run; v2 stores no temporaries, so the name is an identity like any other."""
    root = tmp_path / "data"
    shutil.copytree(mini_dataset.root, root)
    name = "x.tmp-somehost-999999-abc"
    first = sorted((root / "face").iterdir())[0]
    shutil.copy(first, root / "face" / f"{name}{first.suffix}")
    shutil.copytree(root / "video" / first.stem, root / "video" / name)
    dataset = Dataset(root, root / "face", root / "video")
    store = tmp_path / "store"
    run_extract(dataset, store, models)
    assert name in identities(store)
    again = run_extract(dataset, store, models)
    assert again.images_extracted == 0 and name in identities(store)


def test_a_store_path_with_percent_is_refused_clearly(
    tmp_path: Path, mini_dataset: Dataset, models: Models
) -> None:
    with pytest.raises(StoreError, match=r"(?s)holds '%'.*rename the folder"):
        run_extract(mini_dataset, tmp_path / "50%41" / "store", models)


def test_a_store_another_run_is_creating_is_not_refused(tmp_path: Path) -> None:
    """Shards started together create one store: the other's manifest temporary or write
    probe, seen for an instant, is not a stranger's file."""
    folder = tmp_path / "store"
    folder.mkdir()
    (folder / "_featstore.json.tmp-otherhost-123-abcd").write_bytes(b"{")
    (folder / ".write-probe-0123abcd").write_bytes(b"")
    Store(folder, create=True)
    assert (folder / "_featstore.json").is_file()
    stranger = tmp_path / "photos"
    stranger.mkdir()
    (stranger / "keep.txt").write_text("mine")
    with pytest.raises(StoreError, match="holds files but no _featstore.json"):
        Store(stranger, create=True)
