"""Time travel: `--version N` of query, info, export-json and report, and
`FeatureDataset(version=N)`, read exactly version N after a later extract changed an
identity; `featstore history` lists the versions with command and rows added/removed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import MODEL, Dataset, Models, run_extract
from delta_checks import table_rows
from featstore_cli.main import main

from featstore.dataset.feature_dataset import FeatureDataset
from featstore.store import Store
from featstore.store.maintenance import history
from featstore.synthetic.images import draw_face, identity_name

FACE_SQL = "SELECT identity, features FROM faces ORDER BY identity"


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def travelled(
    tmp_path_factory: pytest.TempPathFactory, mini_dataset: Dataset, models: Models
) -> tuple[Path, int, dict[str, object]]:
    """A store extracted, then extracted again after one frontal image changed.

    Returns the store, the first extraction's version and what it showed then.
    """
    root = tmp_path_factory.mktemp("travel")
    shutil.copytree(mini_dataset.root, root / "data")
    dataset = Dataset(root / "data", root / "data" / "face", root / "data" / "video")
    store = root / "store"
    run_extract(dataset, store, models)
    version = Store(store).model(MODEL).info.version
    old_json = root / "old.json"
    _cli("export-json", "--store", str(store), "--out", str(old_json), "--base-dir", str(root))
    before = {
        "faces": Store(store).sql(FACE_SQL).to_pylist(),
        "rows": table_rows(store),
        "json": old_json.read_bytes(),
        "info": _cli("info", "--store", str(store)),
    }
    changed = dataset.face_dir / f"{identity_name(0)}.jpg"
    draw_face(center=(150.0, 110.0), seed=1234).save(changed, quality=90)
    assert run_extract(dataset, store, models).identities_extracted == 1
    return store, version, before


def test_query_and_info_read_the_version_asked_for(
    travelled: tuple[Path, int, dict[str, object]],
) -> None:
    store, version, before = travelled
    latest = Store(store).model(MODEL).info.version
    assert latest > version
    now = Store(store).sql(FACE_SQL).to_pylist()
    assert now[0]["features"] != before["faces"][0]["features"]  # type: ignore[index]
    assert now[1] == before["faces"][1]  # type: ignore[index]
    assert Store(store).sql(FACE_SQL, version=version).to_pylist() == before["faces"]
    shown = _cli(
        "query",
        "--store",
        str(store),
        "--version",
        str(version),
        "--format",
        "json",
        FACE_SQL,
    )
    assert [r["features"] for r in json.loads(shown)] == [
        r["features"]
        for r in before["faces"]  # type: ignore[attr-defined]
    ]
    info = _cli("info", "--store", str(store), "--version", str(version))
    assert f"(table version {version})" in info
    assert f"(table version {latest})" in _cli("info", "--store", str(store))


def test_export_json_and_report_read_the_version_asked_for(
    tmp_path: Path, travelled: tuple[Path, int, dict[str, object]]
) -> None:
    store, version, before = travelled
    out = tmp_path / "old.json"
    base = str(store.parent)  # where the exports of the fixture resolve paths
    old = ("--store", str(store), "--base-dir", base, "--version", str(version))
    _cli("export-json", *old, "--out", str(out))
    assert out.read_bytes() == before["json"]
    latest = tmp_path / "new.json"
    _cli("export-json", "--store", str(store), "--out", str(latest), "--base-dir", base)
    assert latest.read_bytes() != before["json"]
    report = tmp_path / "report.html"
    _cli("report", "--store", str(store), "--out", str(report), "--version", str(version))
    assert report.stat().st_size > 0


def test_feature_dataset_reads_the_version_asked_for(
    tmp_path: Path, travelled: tuple[Path, int, dict[str, object]]
) -> None:
    store, version, before = travelled
    old = FeatureDataset(store, version=version, cache_dir=tmp_path / "cache")
    new = FeatureDataset(store, cache_dir=tmp_path / "cache")
    assert old.version == version and new.version == Store(store).model(MODEL).info.version
    face = {r["identity"]: r["features"] for r in before["faces"]}  # type: ignore[attr-defined]
    for dataset, changes in ((old, False), (new, True)):
        for i in range(len(dataset)):
            sample = dataset[i]
            name = sample["person_name"]
            same = np.allclose(sample["target_features"].numpy(), face[name], atol=0)
            assert same != (changes and name == identity_name(0)), (name, changes)


def test_history_lists_versions_with_command_and_rows(
    travelled: tuple[Path, int, dict[str, object]],
) -> None:
    store, version, before = travelled
    versions = history(store)[MODEL]
    assert [v.version for v in versions] == list(range(versions[0].version, -1, -1))
    latest = versions[0]
    assert latest.command == "extract" and latest.featstore_version
    per_identity = 4  # the frontal image and 3 frames of the mini dataset
    assert (latest.rows_added, latest.rows_removed) == (per_identity, per_identity)
    first = next(v for v in versions if v.version == version)
    assert first.command == "extract" and first.rows_added == 2 * per_identity
    shown = _cli("history", "--store", str(store))
    lines = [line.split() for line in shown.splitlines()]
    row = next(line for line in lines if line and line[0] == str(latest.version))
    assert "extract" in row and row[-2:] == [str(per_identity), str(per_identity)]
    assert any(line and line[0] == "0" for line in lines)
