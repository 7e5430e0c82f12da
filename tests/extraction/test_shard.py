"""`--shard I/N`: a stable split of identities, concurrent shards into one store, the
options that go with scaling out (and the ones refused)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner
from conftest import MODEL, Dataset, Models, run_extract
from featstore_cli.main import main
from store_checks import assert_same_rows, extract_command, table_rows

from featstore.errors import InputError, ProvenanceMismatchError
from featstore.extraction.inputs import parse_shard, shard_of
from featstore.extraction.pipeline import row_schema
from featstore.store import Store
from featstore.store.writer import TableWriter
from featstore.synthetic.images import generate_face_tree


def test_shard_of_is_a_stable_hash_of_the_name() -> None:
    # Pinned: every process, host and featstore version must split a dataset the same way.
    assert [shard_of(name, 4) for name in ("007", "张伟", "o'brien", "50%", "x=y")] == [
        1,
        3,
        1,
        2,
        2,
    ]
    names = [f"person_{i:04d}" for i in range(400)]
    shards = [shard_of(name, 4) for name in names]
    assert {s: shards.count(s) for s in range(4)} == pytest.approx(
        {s: 100 for s in range(4)}, abs=30
    )
    assert all(shard_of(name, 1) == 0 for name in names)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1", "write it as I/N"),
        ("a/b", "write it as I/N"),
        ("2/2", r"(?s)the index must be 0 to 1.*--array=0-1"),
        ("0/0", "the shard count must be a whole number >= 1"),
    ],
)
def test_bad_shards_are_refused(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_shard(text)


@pytest.mark.slow
def test_shards_split_the_identities_and_say_what_they_did(
    tmp_path: Path, mini_dataset: Dataset, models: Models
) -> None:
    store = tmp_path / "store"
    runs = [run_extract(mini_dataset, store, models, shard=(i, 5)) for i in range(5)]
    # person_000 hashes to shard 0 of 5, person_001 to shard 3 (see the pinned test above).
    assert [r.identities_in_input for r in runs] == [1, 0, 0, 1, 0]
    assert [r.identities_extracted for r in runs] == [1, 0, 0, 1, 0]
    assert "shard 3/5 (1 identity): extracted 4 images of 1 " in runs[3].format()
    # The store lines are the whole store's, whichever shard reports them.
    assert runs[4].store_counts[MODEL].identities == 2
    reference = tmp_path / "reference"
    run_extract(mini_dataset, reference, models)
    assert_same_rows(table_rows(store), table_rows(reference))


def test_overwrite_with_a_shard_is_refused(
    tmp_path: Path, mini_dataset: Dataset, models: Models
) -> None:
    with pytest.raises(InputError, match="--overwrite cannot be combined with --shard"):
        run_extract(mini_dataset, tmp_path / "s", models, shard=(0, 2), overwrite=True)
    assert not (tmp_path / "s").exists()


def test_a_concurrent_claim_with_other_settings_is_caught(tmp_path: Path) -> None:
    table = Store(tmp_path / "store", create=True).table(MODEL)
    ours = {"model": MODEL, "feature_dim": 4, "precision": "fp32"}
    theirs = {**ours, "precision": "bf16"}
    schema = row_schema(4)
    errors: list[BaseException] = []

    def claim() -> None:
        try:
            table.claim(ours, schema, overwrite=False)
        except BaseException as exc:  # noqa: BLE001 - collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors  # the same settings claimed concurrently: fine
    writer = TableWriter(table, ours, command="test")  # a run's snapshot, checked
    table.claim(theirs, schema, overwrite=False)  # no rows yet, so it takes over
    writer.add("a", pa.Table.from_pylist([{"identity": "a", "model": MODEL}], schema=schema))
    with pytest.raises(ProvenanceMismatchError, match="claimed with other settings"):
        writer.flush()  # its commit meets the new provenance: refused, nothing written
    assert Store(tmp_path / "store").sql("SELECT count(*) AS n FROM images")["n"][0].as_py() == 0


def test_ray_options_need_the_ray_engine(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["extract", "--face-dir", str(tmp_path), "--video-dir", str(tmp_path)]
        + ["--store", str(tmp_path / "s"), "--ray-address", "auto"],
    )
    assert result.exit_code == 2
    assert "need --engine ray" in result.output


def test_without_ray_the_engine_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mini_dataset: Dataset
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets when Ray is absent
    result = CliRunner().invoke(
        main,
        ["extract", "--face-dir", str(mini_dataset.face_dir)]
        + ["--video-dir", str(mini_dataset.video_dir), "--store", str(tmp_path / "s")]
        + ["--engine", "ray"],
    )
    assert result.exit_code == 1
    assert "Hint: pip install 'featstore-faces[ray]'" in result.output
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_two_shard_processes_fill_one_store_like_a_single_run(
    tmp_path: Path, models: Models
) -> None:
    face_dir, video_dir = generate_face_tree(
        tmp_path / "data", identities=6, frames_per_identity=2, seed=7
    )
    dataset = Dataset(tmp_path / "data", face_dir, video_dir)
    store = tmp_path / "store"
    procs = [
        subprocess.Popen(
            [*extract_command(dataset, store, models), "--shard", f"{i}/2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0].decode(errors="replace") for p in procs]
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output
    # --no-progress logs a heartbeat on a slow machine; the summary follows it, between
    # the stand-in models' warnings.
    outputs = [
        "".join(
            ln
            for ln in o.splitlines(True)
            if not ln.startswith(("INFO featstore.progress", "!! STAND-IN"))
        )
        for o in outputs
    ]
    assert outputs[0].startswith("shard 0/2") and outputs[1].startswith("shard 1/2")

    reference = tmp_path / "reference"
    run_extract(dataset, reference, models)
    assert Store(store).model(MODEL).provenance == Store(reference).model(MODEL).provenance
    assert_same_rows(table_rows(store), table_rows(reference))
    assert run_extract(dataset, store, models).images_extracted == 0
