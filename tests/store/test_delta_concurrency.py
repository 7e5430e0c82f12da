"""Concurrent commits into one table: shard jobs both land, conflicts are retried (never
lost, never doubled), locally and on S3; two runs with different settings into an empty
model: one is refused and the table never holds rows of both (issue 14, point 1)."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import MODEL, Dataset, Models, run_extract
from delta_checks import (
    assert_no_duplicates,
    assert_same_rows,
    build_store,
    featstore,
    synthetic_provenance,
    synthetic_rows,
    table_rows,
)
from s3_server import S3
from store_checks import extract_args

from featstore.store import Store
from featstore.store.writer import TableWriter
from featstore.synthetic.images import generate_face_tree


def _in_threads(*jobs: Callable[[], None]) -> None:
    """Run `jobs` at once; re-raise the first failure."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def run(job: Callable[[], None]) -> None:
        try:
            start.wait()
            job()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _concurrent_writers(store: str | Path) -> None:
    """4 writers commit 5 identities each, one commit per identity, at the same time;
    a fifth replaces the 4 identities the table held before, meanwhile."""
    build_store(store, 4, per_commit=4, prefix="old")
    writers = [
        (lambda p=prefix: build_store(store, 5, per_commit=1, prefix=p))
        for prefix in ("a", "b", "c", "d")
    ]

    def replace() -> None:
        table = Store(store).table(MODEL)
        present = {f"old_{i:05d}" for i in range(4)}
        writer = TableWriter(table, synthetic_provenance(8), command="test", max_identities=1)
        for i, name in enumerate(sorted(present)):
            rows = synthetic_rows(name, 4, 8, seed=100 + i)
            writer.add(name, rows, fingerprint=f"new-{i}")
        writer.flush()

    _in_threads(*writers, replace)


def _check_concurrent_writers(store: str | Path) -> None:
    rows = table_rows(store)
    assert_no_duplicates(rows)
    names = set(rows.column("identity").to_pylist())
    expected = {f"{p}_{i:05d}" for p in "abcd" for i in range(5)}
    assert names == expected | {f"old_{i:05d}" for i in range(4)}
    assert rows.num_rows == len(names) * 5
    fingerprints = Store(store).sql(
        "SELECT DISTINCT identity, input_fingerprint FROM images WHERE identity LIKE 'old%'"
    )
    assert sorted(fingerprints.column("input_fingerprint").to_pylist()) == [
        f"new-{i}" for i in range(4)
    ]


def test_concurrent_commits_are_retried_never_lost_or_doubled(tmp_path: Path) -> None:
    store = tmp_path / "store"
    _concurrent_writers(store)
    _check_concurrent_writers(store)


def test_concurrent_commits_on_s3(s3: S3) -> None:
    uri = s3.uri("stores/concurrent")
    _concurrent_writers(uri)
    _check_concurrent_writers(uri)


@pytest.fixture(scope="module")
def shard_dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    root = tmp_path_factory.mktemp("shard_data")
    face_dir, video_dir = generate_face_tree(
        root, identities=6, frames_per_identity=2, no_face_every=2, seed=21
    )
    return Dataset(root, face_dir, video_dir)


def _start(command: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_shard_jobs_committing_at_once_both_land(
    tmp_path: Path, shard_dataset: Dataset, models: Models
) -> None:
    reference = tmp_path / "reference"
    run_extract(shard_dataset, reference, models)
    store = tmp_path / "store"
    jobs = [
        _start(
            featstore(
                *extract_args(shard_dataset, store, models, "--shard", f"{i}/2"), commit_every=1
            )
        )
        for i in range(2)
    ]
    outputs = [job.communicate(timeout=600) for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outputs
    assert_same_rows(table_rows(store), table_rows(reference))
    commands = [v.command for v in Store(store).model(MODEL).history()]
    assert commands.count("extract") == 6  # one commit per identity, none lost


@pytest.mark.slow
def test_two_runs_with_other_settings_into_an_empty_model_one_is_refused(
    tmp_path: Path, shard_dataset: Dataset, models: Models
) -> None:
    store = tmp_path / "store"
    jobs = {
        thresh: _start(
            featstore(
                *extract_args(shard_dataset, store, models, "--det-thresh", thresh),
                commit_every=1,
            )
        )
        for thresh in ("0.5", "0.6")
    }
    outputs = {t: job.communicate(timeout=600) for t, job in jobs.items()}
    codes = {t: job.returncode for t, job in jobs.items()}
    assert sorted(codes.values()) == [0, 1], outputs
    winner = next(t for t, code in codes.items() if code == 0)
    loser = next(t for t, code in codes.items() if code == 1)
    assert "other settings" in outputs[loser][1] and "Traceback" not in outputs[loser][1]
    table = Store(store).table(MODEL)
    # Every version: the rows' threshold (in their no_face errors) is its provenance's.
    for version in range(table.open().version + 1):
        snap = Store(store).model(MODEL, version)
        rows = table_rows(store, version=version)
        thresholds = {
            m.group(1)
            for e in rows.column("error").to_pylist()
            if e and (m := re.search(r"det_thresh ([0-9.]+)", e))
        }
        assert thresholds <= {str(snap.info.provenance["detector"]["det_thresh"])}, version
    final = Store(store).model(MODEL).info.provenance
    assert str(final["detector"]["det_thresh"]) == winner
    assert table_rows(store).num_rows == 6 * 3


def test_two_writers_of_the_same_new_identities_leave_one_copy(tmp_path: Path) -> None:
    """Two runs that both planned the same identities as new (the same command started
    twice, a Ray task retried after its commit): the second commit replaces, never adds."""
    store = tmp_path / "store"
    build_store(store, 1, prefix="base")

    def writer(seed: int) -> Callable[[], None]:
        def job() -> None:
            table = Store(store).table(MODEL)
            out = TableWriter(table, synthetic_provenance(8), command="test", max_identities=3)
            for i in range(3):
                out.add(f"x_{i}", synthetic_rows(f"x_{i}", 4, 8, seed=seed + i), f"fp-{seed}")
            out.flush()

        return job

    _in_threads(writer(0), writer(10))
    rows = table_rows(store)
    assert_no_duplicates(rows)
    assert rows.num_rows == 4 * 5
    # each identity's rows come from one writer, whole
    per_identity = Store(store).sql(
        "SELECT identity, count(DISTINCT input_fingerprint) n FROM images GROUP BY ALL"
    )
    assert set(per_identity.column("n").to_pylist()) == {1}


def test_a_claim_that_races_a_commit_of_other_settings_is_undone_and_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14 point 1, its narrow window: run B finds the model empty, run A commits
    rows, then B changes the provenance. B must not label A's rows with its settings."""
    from featstore.errors import ProvenanceMismatchError
    from featstore.extraction.pipeline import row_schema
    from featstore.store.snapshot import ModelSnapshot

    store = tmp_path / "store"
    opened = Store(store, create=True)
    mine, theirs = synthetic_provenance(8), {**synthetic_provenance(8), "source": "other"}
    opened.table(MODEL).claim(mine, row_schema(8), overwrite=False)  # empty, A's settings
    real_provenance = ModelSnapshot._read_provenance
    raced: list[bool] = []

    def provenance_then_a_commits(self: ModelSnapshot) -> dict[str, object]:
        stored = real_provenance(self)
        if not raced:  # B has read the (empty) snapshot: A commits now
            raced.append(True)
            writer = TableWriter(Store(store).table(MODEL), mine, command="A")
            writer.add("x", synthetic_rows("x", 4, 8, seed=0), fingerprint="fp")
            writer.flush()
        return stored

    monkeypatch.setattr(ModelSnapshot, "_read_provenance", provenance_then_a_commits)
    with pytest.raises(ProvenanceMismatchError, match="other settings by another run"):
        Store(store).table(MODEL).claim(theirs, row_schema(8), overwrite=False)
    monkeypatch.undo()
    assert raced
    snap = Store(store).model(MODEL)
    assert snap.info.provenance == mine  # A's rows keep A's provenance
    assert table_rows(store).num_rows == 5
    # A goes on committing: its snapshot predates two metadata commits, same provenance.
    writer = TableWriter(Store(store).table(MODEL), mine, command="A")
    writer.add("y", synthetic_rows("y", 4, 8, seed=1), fingerprint="fp")
    writer.flush()
    assert table_rows(store).num_rows == 10
