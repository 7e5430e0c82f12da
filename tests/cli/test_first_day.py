"""What a newcomer meets on the first day: the command line's small promises (issue 13)."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner, Result
from conftest import MODEL, Dataset, Extracted, Models
from featstore_cli.main import main

from featstore.errors import InputError
from featstore.store import Store
from featstore.store.where import check_where_with


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def test_query_max_rows_limits_the_rows_shown(extracted: Extracted) -> None:
    sql = "SELECT * FROM range(100) t(i)"
    shown = {}
    for max_rows in (10, 30):
        result = invoke("query", "--store", extracted.store, sql, "--max-rows", max_rows)
        assert result.exit_code == 0, result.output
        shown[max_rows] = len(re.findall(r"^│\s+\d+ │$", result.output, flags=re.M))
        assert "(100 rows; more with --max-rows N, all with --format csv)" in result.output
    assert shown == {10: 10, 30: 30}
    everything = invoke("query", "--store", extracted.store, sql, "--max-rows", 100)
    assert len(re.findall(r"^│\s+\d+ │$", everything.output, flags=re.M)) == 100
    assert "more with --max-rows" not in everything.output


def test_query_output_says_what_it_wrote(extracted: Extracted, tmp_path: Path) -> None:
    sql = "SELECT identity FROM identities"
    for fmt in ("table", "csv", "parquet"):
        out = tmp_path / f"result.{fmt}"
        result = invoke("query", "--store", extracted.store, sql, "--format", fmt, "--output", out)
        assert result.exit_code == 0, result.output
        assert re.search(rf"wrote \d+ rows to {re.escape(str(out))}", result.output)
        assert out.stat().st_size > 0


def test_report_store_is_a_plain_string() -> None:
    """A URI reaches the library whole (click.Path turned s3://b into s3:/b)."""
    result = invoke("report", "--store", "nosuch://bucket/faces", "--out", "r.html")
    assert result.exit_code == 1
    assert "nosuch://bucket/faces" in result.output
    assert "does not exist" not in result.output


def test_info_on_an_imported_store_prints_no_none(extracted: Extracted, tmp_path: Path) -> None:
    exported = tmp_path / "valid.json"
    assert invoke("export-json", "--store", extracted.store, "--out", exported).exit_code == 0
    store = tmp_path / "imported"
    result = invoke("import-json", exported, "--store", store)
    assert result.exit_code == 0, result.output
    info = invoke("info", "--store", store)
    assert info.exit_code == 0, info.output
    assert "None" not in info.output
    assert "source json" in info.output
    extracted_info = invoke("info", "--store", extracted.store).output
    assert "det_size 640" in extracted_info and "None" not in extracted_info


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("abs(avg_angle < 30", "it ends too early"),
        ("avg_angle <", "it ends too early"),
        ("avg_angel < 30", 'column "avg_angel" not found'),
    ],
)
def test_where_typo_never_shows_a_parenthesis_never_typed(where: str, expected: str) -> None:
    con = duckdb.connect()
    con.execute("CREATE VIEW frames AS SELECT 1.0 AS avg_angle")
    with pytest.raises(InputError, match=re.escape(expected)) as err:
        check_where_with(con, where, ["avg_angle"])
    assert 'near ")"' not in str(err.value)


def extract_cli(models: Models, face: Path, video: Path, store: Path, *flags: str) -> Result:
    """`featstore extract` with the stand-in models, fast settings and `flags` after."""
    return invoke(
        "extract",
        *flags,
        "--face-dir", face,
        "--video-dir", video,
        "--store", store,
        "--model", MODEL,
        "--weights", models.weights,
        "--insightface-root", models.insightface_root,
        "--cpu", "--workers", "0", "--no-progress",
    )  # fmt: skip


def test_swapped_or_parent_folders_are_warned_about(
    mini_dataset: Dataset, models: Models, tmp_path: Path
) -> None:
    face, video = mini_dataset.face_dir, mini_dataset.video_dir
    swapped = extract_cli(models, video, face, tmp_path / "s1")
    assert swapped.exit_code == 0, swapped.output
    assert "warning: --face-dir" in swapped.output and "swapped with --video-dir?" in swapped.output
    assert f"--video-dir {face} holds 2 images but no identity folder" in swapped.output
    parent = extract_cli(models, mini_dataset.root, video, tmp_path / "s2")
    assert parent.exit_code == 0, parent.output
    assert f"warning: --face-dir {mini_dataset.root} holds no image but 2 folders" in parent.output
    assert "give the face folder itself" in parent.output
    fine = extract_cli(models, face, video, tmp_path / "s3")
    assert fine.exit_code == 0 and "warning" not in fine.output.lower(), fine.output


def test_skipped_inputs_are_named_and_deleted_identities_reported(
    mini_dataset: Dataset, models: Models, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="featstore")  # what -v shows
    root = tmp_path / "data"
    shutil.copytree(mini_dataset.root, root)
    face, video = root / "face", root / "video"
    identity = sorted(p.stem for p in face.iterdir())[0]
    (face / "notes.txt").write_text("not an image")
    loose = video / "loose.jpg"
    shutil.copy(next(face.glob("*.jpg")), loose)
    nested = video / identity / "more"
    nested.mkdir()
    result = extract_cli(models, face, video, tmp_path / "store")
    assert result.exit_code == 0, result.output
    assert "note: 3 inputs skipped" in result.output
    for path in (face / "notes.txt", loose, nested):  # -v names every one
        assert f"skipped {path} (" in caplog.text
    assert "an image directly in --video-dir" in caplog.text
    assert "a folder inside an identity's folder" in caplog.text

    next(face.glob(f"{identity}.*")).unlink()
    shutil.rmtree(video / identity)
    again = extract_cli(models, face, video, tmp_path / "store")
    assert again.exit_code == 0, again.output
    assert (
        f"note: 1 identity in the store has no inputs any more (deleted or renamed): {identity}"
        in again.output
    )


def test_dry_run_says_what_would_be_done_and_writes_nothing(
    mini_dataset: Dataset, models: Models, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    dry = extract_cli(models, mini_dataset.face_dir, mini_dataset.video_dir, store, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "dry run: would extract 8 images of 2 identities on cpu; 0 of 2" in dry.output
    assert f"{MODEL}: {models.weights}" in dry.output and "detector: " in dry.output
    assert "(nothing written)" in dry.output
    assert not store.exists()
    limited = extract_cli(
        models, mini_dataset.face_dir, mini_dataset.video_dir, store, "--limit", "1"
    )
    assert limited.exit_code == 0, limited.output
    assert "extracted 4 images of 1 identity " in limited.output
    assert "note: limited to the first 1 identity by name" in limited.output
    rest = extract_cli(models, mini_dataset.face_dir, mini_dataset.video_dir, store, "--dry-run")
    assert "dry run: would extract 4 images of 1 identity on cpu; 1 of 2" in rest.output


def test_every_checkpoint_is_checked_before_any_work(
    mini_dataset: Dataset, models: Models, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    args = ["--weights", f"{MODEL}={models.weights_reg}"]  # a _reg checkpoint for vits14
    result = invoke(
        "extract",
        "--face-dir", mini_dataset.face_dir,
        "--video-dir", mini_dataset.video_dir,
        "--store", store,
        "--model", MODEL,
        *args,
        "--insightface-root", models.insightface_root,
        "--cpu", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "does not hold dinov2_vits14 weights" in result.output
    assert not list(store.glob("model=*"))  # no claim, no partition: nothing was started


def test_no_progress_logs_a_heartbeat(
    mini_dataset: Dataset,
    models: Models,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from featstore.extraction import local_engine

    monkeypatch.setattr(local_engine, "HEARTBEAT_S", 0.0)  # every batch, not every minute
    caplog.set_level(logging.INFO, logger="featstore.progress")
    store = tmp_path / "store"
    result = extract_cli(
        models, mini_dataset.face_dir, mini_dataset.video_dir, store, "--batch-size", "2"
    )
    assert result.exit_code == 0, result.output
    lines = [r.getMessage() for r in caplog.records if r.name == "featstore.progress"]
    line = re.compile(r"\d+/8 images \(\d+%\), [\d.]+ images/s, ETA \d+m\d\ds")
    assert len(lines) == 3 and all(line.fullmatch(text) for text in lines), lines  # 2, 4, 6 of 8


def test_a_moved_dataset_is_rebased_not_extracted_again(
    mini_dataset: Dataset, models: Models, tmp_path: Path
) -> None:
    old = tmp_path / "old" / "data"
    shutil.copytree(mini_dataset.root, old)  # copytree keeps mtimes, as mv and rsync -a do
    store = tmp_path / "store"
    first = extract_cli(models, old / "face", old / "video", store)
    assert first.exit_code == 0, first.output
    new = tmp_path / "new" / "data"
    new.parent.mkdir()
    old.rename(new)

    refused = extract_cli(models, new / "face", new / "video", store)
    assert refused.exit_code == 1
    assert "base_dir: stored" in refused.output and "(CLI: --rebase)" in refused.output
    # The dry run of the rebase says what the rebase would do, and writes nothing.
    dry = extract_cli(models, new / "face", new / "video", store, "--rebase", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would extract 0 images of 0 identities" in dry.output, dry.output
    assert Store(store).model(MODEL).provenance["base_dir"] == old.as_posix()
    rebased = extract_cli(models, new / "face", new / "video", store, "--rebase")
    assert rebased.exit_code == 0, rebased.output
    assert "extracted 0 images of 0 identities" in rebased.output
    assert "2 identities already up to date" in rebased.output
    info = Store(store).model(MODEL).provenance
    assert info["base_dir"] == new.as_posix()
    again = extract_cli(models, new / "face", new / "video", store)  # no flag needed now
    assert "extracted 0 images of 0 identities" in again.output, again.output

    (new / "face").rename(new / "faces")  # another layout below the base dir: refused
    for dry_run in ((), ("--dry-run",)):
        moved = extract_cli(models, new / "faces", new / "video", store, "--rebase", *dry_run)
        assert moved.exit_code == 1
        assert "the folders below the base dir changed" in moved.output


def test_a_plain_import_reaches_the_documented_api() -> None:
    """`import featstore`, then what the README uses, in a fresh interpreter."""
    code = (
        "import featstore\n"
        "assert callable(featstore.query.Store) and callable(featstore.report.read_report)\n"
        "s = featstore.DetectorSettings(root='~/.insightface')\n"
        "assert s.pack_dir.name == 'buffalo_l' and s.pack_dir.is_absolute()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_folder_warning_is_printed_once(
    mini_dataset: Dataset, models: Models, tmp_path: Path
) -> None:
    """The summary says it; the scan's log line said it a second time (on stderr)."""
    face, video = mini_dataset.face_dir, mini_dataset.video_dir
    done = subprocess.run(
        [sys.executable, "-m", "featstore", "extract", "--face-dir", video, "--video-dir", face,
         "--store", tmp_path / "s", "--model", MODEL, "--weights", models.weights,
         "--insightface-root", models.insightface_root, "--cpu", "--workers", "0",
         "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (done.stdout + done.stderr).count("swapped with --video-dir?") == 1, done
