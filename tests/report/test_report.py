"""featstore report: the numbers it shows, bad inputs, two models, and a real browser."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import sys
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import MODEL, MODEL_REG, Dataset, Extracted, Models, run_extract
from featstore_cli.main import main
from headless_browser import Browser, chromium_missing_reason
from PIL import Image
from store_checks import table_rows

from featstore.errors import InputError, StoreError
from featstore.extraction.decoding import ImageTask
from featstore.extraction.detection import Detection
from featstore.extraction.pipeline import row_schema
from featstore.extraction.rows import ImageResult, identity_table
from featstore.report.build import (
    ANGLES,
    NORM_TOLERANCE,
    ReportData,
    ReportSummary,
    read_report,
    worst_first,
    write_report,
)
from featstore.report.gallery import make_thumbnail
from featstore.report.plots import Panel, Series, histograms_png
from featstore.report.stats import Distribution, Stats
from featstore.report.tally import FINE_BINS
from featstore.store import Store
from featstore.store.query import count_rows
from featstore.store.writer import TableWriter
from featstore.synthetic.awkward import AWKWARD_IDENTITIES, BAD_FRAMES_IDENTITY

SHOWN = re.compile(r"<script type='application/json' id='featstore-report'>(.*?)</script>", re.S)
WHERE = "abs(avg_angle) < 5"


def shown(path: Path) -> dict[str, Any]:
    """The numbers a report file shows (its embedded JSON)."""
    match = SHOWN.search(path.read_text("utf-8"))
    assert match is not None
    value: dict[str, Any] = json.loads(match.group(1))
    return value


def store_rows(store: Path, model: str = MODEL) -> list[dict[str, Any]]:
    """Every row of one model, read with pyarrow from the files its table's log lists."""
    return table_rows(store, model).to_pylist()


def expected_identities(rows: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """identity -> (face status, frames, ok, no_face, unreadable, valid), from raw rows."""
    found: dict[str, list[Any]] = defaultdict(lambda: [None, 0, 0, 0, 0])
    for r in rows:
        entry = found[r["identity"]]
        if r["role"] == "face":
            entry[0] = r["status"]
        else:
            entry[1] += 1
            entry[2 + ("ok", "no_face", "unreadable").index(r["status"])] += 1
    return {k: (*v, v[0] == "ok" and v[2] > 0) for k, v in found.items()}


def valid_frame_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    table = expected_identities(rows)
    return [
        r for r in rows if r["role"] == "frame" and r["status"] == "ok" and table[r["identity"]][5]
    ]


@pytest.fixture(scope="module")
def report(extracted: Extracted, tmp_path_factory: pytest.TempPathFactory) -> ReportSummary:
    return write_report(extracted.store, out=tmp_path_factory.mktemp("report") / "report.html")


@pytest.fixture(scope="module")
def data(extracted: Extracted) -> ReportData:
    return read_report(extracted.store)


# --- the numbers ---------------------------------------------------------------------------


def test_overview_is_what_info_counts(extracted: Extracted, report: ReportSummary) -> None:
    rows = store_rows(extracted.store)
    table = expected_identities(rows)
    got = shown(report.path)
    assert got["model"] == MODEL
    assert got["identities"] == len(table)
    assert got["valid_identities"] == sum(v[5] for v in table.values())
    frames = [r for r in rows if r["role"] == "frame"]
    for status in ("ok", "no_face", "unreadable"):
        assert got["frames"].get(status, 0) == sum(r["status"] == status for r in frames)
    assert got["frames_selected"] == len(frames)
    counts = count_rows(Store(extracted.store))[MODEL]
    assert (got["identities"], got["valid_identities"]) == (
        counts.identities,
        counts.valid_identities,
    )
    html = report.path.read_text("utf-8")
    valid = got["valid_identities"]
    assert f"{valid} ({100 * valid / len(table):.1f}%)" in html
    assert (report.identities, report.frames) == (len(table), len(frames))


def test_identity_table_matches_the_rows_worst_first(
    extracted: Extracted, report: ReportSummary
) -> None:
    expected = expected_identities(store_rows(extracted.store))
    table = shown(report.path)["identity_table"]
    assert {row[0]: tuple(row[1:]) for row in table} == expected
    assert len(table) == len(expected)
    invalid = {k for k, v in expected.items() if not v[5]}
    assert {row[0] for row in table[: len(invalid)]} == invalid  # not valid first
    shares = [row[3] / row[2] if row[2] else 0.0 for row in table[len(invalid) :]]
    assert shares == sorted(shares)
    assert table[len(invalid)][0] == BAD_FRAMES_IDENTITY  # the valid one that lost most
    assert set(AWKWARD_IDENTITIES) <= {row[0] for row in table}


def test_identity_table_is_what_featstore_query_returns(
    extracted: Extracted, report: ReportSummary
) -> None:
    sql = (
        "SELECT identity, face_status, frames_total, frames_ok, frames_no_face, "
        "frames_unreadable, valid FROM identities"
    )
    result = CliRunner().invoke(
        main, ["query", "--store", str(extracted.store), sql, "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    queried = {r["identity"]: list(r.values())[1:] for r in json.loads(result.output)}
    assert {row[0]: row[1:] for row in shown(report.path)["identity_table"]} == queried


def test_worst_first_order() -> None:
    from featstore.report.build import IdentityRow

    rows = [
        IdentityRow("a", "ok", 10, 9, 1, 0, True),
        IdentityRow("b", "ok", 10, 5, 5, 0, True),
        IdentityRow("c", "no_face", 10, 10, 0, 0, False),
        IdentityRow("d", "ok", 0, 0, 0, 0, False),
        IdentityRow("e", "ok", 20, 10, 10, 0, True),
    ]
    assert [r.identity for r in worst_first(rows)] == ["d", "c", "e", "b", "a"]


def test_angles_are_those_of_valid_frames(extracted: Extracted, data: ReportData) -> None:
    frames = [
        r for r in valid_frame_rows(store_rows(extracted.store)) if r["avg_angle"] is not None
    ]
    assert frames
    expected = {"avg_angle": sorted(r["avg_angle"] for r in frames)}
    for i in range(5):
        expected[ANGLES[i + 1]] = sorted(r["spherical_angles"][i] for r in frames)
    for name, values in expected.items():
        assert_distribution(data.angles[name], values, name)


def assert_distribution(shown: Distribution, values: Sequence[float], name: str = "") -> None:
    """The statistics and histogram summed up range by range are numpy's over the same
    values (means and standard deviations up to the order of summation; the median to
    within 1/FINE_BINS of the values' range, as `featstore.report.tally` says)."""
    array = np.asarray(values, dtype=np.float64)
    expected = Stats.of(array)
    got = shown.stats
    assert (got.count, got.non_finite) == (expected.count, expected.non_finite), name
    assert (got.minimum, got.maximum) == (expected.minimum, expected.maximum), name
    if expected.median is not None:
        assert expected.minimum is not None and expected.maximum is not None
        bound = (expected.maximum - expected.minimum) / FINE_BINS
        assert got.median == pytest.approx(expected.median, abs=bound + 1e-12), name
    assert got.mean == pytest.approx(expected.mean, abs=1e-9), name
    assert got.std == pytest.approx(expected.std, abs=1e-9), name
    edges = shown.histogram.edges
    counts, _ = np.histogram(array[np.isfinite(array)], bins=edges)
    assert shown.histogram.counts.tolist() == counts.tolist(), name


def test_angle_statistics_shown(extracted: Extracted, report: ReportSummary) -> None:
    frames = valid_frame_rows(store_rows(extracted.store))
    values = np.array([r["avg_angle"] for r in frames], dtype=np.float64)
    stats = shown(report.path)["angles"]["avg_angle"]
    assert stats["count"] == values.size
    assert stats["mean"] == pytest.approx(values.mean(), abs=1e-9)
    assert stats["min"] == values.min() and stats["max"] == values.max()
    bound = (values.max() - values.min()) / FINE_BINS  # see featstore.report.tally
    assert stats["median"] == pytest.approx(np.median(values), abs=bound)


def test_det_scores_and_norms(extracted: Extracted, data: ReportData) -> None:
    rows = store_rows(extracted.store)
    for role in ("face", "frame"):
        scores = sorted(r["det_score"] for r in rows if r["role"] == role and r["det_score"])
        assert_distribution(data.det_scores[role], scores, role)
        features = np.array(
            [r["features"] for r in rows if r["role"] == role and r["features"] is not None]
        )
        norms = np.linalg.norm(features.astype(np.float64), axis=1)
        shown = data.norms.norms[role].stats
        assert shown.count == norms.size
        assert (shown.minimum, shown.maximum) == pytest.approx((norms.min(), norms.max()), 1e-5)
        assert data.norms.norms[role].histogram.total == norms.size
    assert data.norms.checked == sum(r["features"] is not None for r in rows)
    assert data.norms.flagged_total == 0  # extraction L2-normalises (SPEC §2)


def test_rejected_frames_and_reasons(extracted: Extracted, data: ReportData) -> None:
    rows = store_rows(extracted.store)
    rejected = [r for r in rows if r["role"] == "frame" and r["status"] != "ok"]
    assert data.rejected_total == len(rejected)
    assert sum(n for _, _, n in data.rejection_reasons) == len(rejected)
    by_key = {(r["identity"], r["frame_index"]): r for r in rejected}
    statuses = {image.status for image in data.rejected}
    assert statuses == {"no_face", "unreadable"}  # each status shown, not only the frequent
    for image in data.rejected:
        row = by_key[(image.identity, image.frame_index)]
        assert (image.status, image.error) == (row["status"], row["error"])
        assert image.error


def test_gallery_is_seeded_and_draws_the_images(extracted: Extracted, data: ReportData) -> None:
    again = read_report(extracted.store)
    assert [g.identity for g in again.gallery] == [g.identity for g in data.gallery]
    assert [(i.identity, i.frame_index) for i in again.rejected] == [
        (i.identity, i.frame_index) for i in data.rejected
    ]
    other = read_report(extracted.store, seed=7)
    assert [g.identity for g in other.gallery] != [g.identity for g in data.gallery]
    assert len(data.gallery) == 8
    for entry in data.gallery:
        assert entry.face is not None and entry.face.role == "face"
        assert len(entry.frames) == min(4, entry.frames_total)
        for image in [entry.face, *entry.frames]:
            # unreadable files cannot be drawn; everything else exists and decodes
            assert (image.thumbnail.data_uri is None) == (image.status == "unreadable")
    assert data.unshown_images == []  # unreadable frames get placeholders but are expected
    placeholders = [i for i in data.rejected if i.thumbnail.data_uri is None]
    assert placeholders and all(i.status == "unreadable" for i in placeholders)
    assert all(i.thumbnail.problem.startswith("cannot decode") for i in placeholders)


def test_thumbnail_is_small_and_has_the_box_drawn(extracted: Extracted) -> None:
    rows = store_rows(extracted.store)
    face = next(r for r in rows if r["role"] == "face" and r["status"] == "ok")
    base = Store(extracted.store).model(MODEL).provenance["base_dir"]
    thumb = make_thumbnail(base, face["image_path"], box=face["box"], landmarks=None)
    assert thumb.data_uri is not None and thumb.problem is None
    img = Image.open(io.BytesIO(base64.b64decode(thumb.data_uri.split(",", 1)[1])))
    assert img.format == "JPEG" and max(img.size) == 128
    plain = make_thumbnail(base, face["image_path"])
    assert plain.data_uri != thumb.data_uri
    gone = make_thumbnail(base, "face/not-there.jpg")
    assert (gone.data_uri, gone.problem) == (None, "missing")


def test_where_filters_the_frames_as_export_json_does(extracted: Extracted, tmp_path: Path) -> None:
    summary = write_report(extracted.store, out=tmp_path / "r.html", where=WHERE)
    got = shown(summary.path)
    store = Store(extracted.store)
    kept = store.sql(f"SELECT count(*) AS n FROM frames WHERE {WHERE}")["n"][0].as_py()
    assert (
        0
        < got["frames_selected"]
        == kept
        < len([r for r in store_rows(extracted.store) if r["role"] == "frame"])
    )
    assert got["where"] == WHERE
    assert got["identities"] == count_rows(store)[MODEL].identities  # overview: whole store
    rows = [
        r
        for r in store_rows(extracted.store)
        if r["role"] == "face" or (r["avg_angle"] is not None and abs(r["avg_angle"]) < 5)
    ]
    assert {row[0]: tuple(row[1:]) for row in got["identity_table"]} == expected_identities(rows)
    assert got["angles"]["avg_angle"]["count"] == kept
    assert max(abs(got["angles"]["avg_angle"]["min"]), got["angles"]["avg_angle"]["max"]) < 5
    html = summary.path.read_text("utf-8")
    assert f"keeps <b id='frames-selected'>{kept}</b>" in html
    # The angle filter drops every rejected frame (null angles): the page says so.
    assert "No frame was rejected" not in html
    assert "No rejected frame among the frames that --where" in html


# --- bad inputs ----------------------------------------------------------------------------


def test_bad_where_names_the_columns(extracted: Extracted, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    with pytest.raises(InputError, match=r"--where 'no_such_column > 1'.*\n.*avg_angle"):
        write_report(extracted.store, out=out, where="no_such_column > 1")
    assert not out.exists() and not list(tmp_path.iterdir())
    result = CliRunner().invoke(
        main, ["report", "--store", str(extracted.store), "--out", str(out), "--where", "1 +"]
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: --where '1 +' is not a usable filter")


def test_where_failing_on_the_rows(extracted: Extracted, tmp_path: Path) -> None:
    # The same message as export-json's and the Dataset's: the columns, then the hint.
    with pytest.raises(
        InputError,
        match="failed on the rows of the store.*\nThe columns of frames: .*\nHint: guard",
    ):
        read_report(extracted.store, where="CAST(error AS INTEGER) > 0")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--store", "{tmp}/none"], "store {tmp}/none does not exist or is not a folder."),
        (["--store", "{tmp}"], "{tmp} is not a featstore store (no _featstore.json)."),
        (["--model", "dinov2_vitg14"], "has no model 'dinov2_vitg14'; it holds: dinov2_vits14."),
        (["--out", "{tmp}"], "--out {tmp} is a folder."),
    ],
)
def test_bad_options_exit_cleanly(
    extracted: Extracted, tmp_path: Path, args: list[str], message: str
) -> None:
    options = {"--store": str(extracted.store), "--out": str(tmp_path / "r.html")}
    for key, value in zip(args[::2], args[1::2], strict=True):
        options[key] = value.format(tmp=tmp_path)
    argv = ["report", *[x for kv in options.items() for x in kv]]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert message.format(tmp=tmp_path) in result.output
    assert not (tmp_path / "r.html").exists()


def test_a_missing_out_folder_is_created(extracted: Extracted, tmp_path: Path) -> None:
    """As `mkdir -p` would (issue 23): was refused before."""
    out = tmp_path / "no" / "r.html"
    result = CliRunner().invoke(
        main, ["report", "--store", str(extracted.store), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.is_file() and out.read_text().startswith("<!DOCTYPE html>")


def test_empty_store(tmp_path: Path) -> None:
    Store(tmp_path / "store", create=True)
    with pytest.raises(StoreError, match="holds no model yet.\nHint: run `featstore extract`"):
        write_report(tmp_path / "store", out=tmp_path / "r.html")


def test_replaces_the_file_atomically(extracted: Extracted, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    out.write_text("old")
    with pytest.raises(InputError):
        write_report(extracted.store, out=out, where="nope")
    assert out.read_text() == "old"  # a failed report leaves the old file
    write_report(extracted.store, out=out)
    assert out.read_text("utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temporary left


def test_report_command(extracted: Extracted, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["report", "--store", str(extracted.store), "--out", out])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"wrote the report of {MODEL} (")
    assert str(out) in result.output and out.stat().st_size > 10_000


def test_self_contained_and_small(report: ReportSummary) -> None:
    html = report.path.read_text("utf-8")
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    sources = re.findall(r"""\bsrc=['"]([^'"]*)""", html)
    assert sources and all(s.startswith("data:image/") for s in sources)
    assert not re.search(r"(href|src)=['\"]?(https?:)?//", html)
    assert report.bytes == report.path.stat().st_size < 2_000_000
    assert "matplotlib.pyplot" not in sys.modules  # no global pyplot state


def test_plots_are_pngs_even_without_values() -> None:
    png = histograms_png(
        [
            Panel("empty", "x"),
            Panel("nan only", "x", [Series("", np.array([np.nan, np.inf]))]),
            Panel("one value", "x", [Series("a", np.ones(5)), Series("b", np.ones(2))]),
            Panel("integers", "x", [Series("", np.arange(7))], bins="integer"),
        ],
        columns=3,
    )
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert Image.open(io.BytesIO(png)).size[0] > 600


# --- missing images, odd features, two models ----------------------------------------------


@pytest.fixture(scope="module")
def two_models(
    tmp_path_factory: pytest.TempPathFactory, mini_dataset: Dataset, models: Models
) -> tuple[Dataset, Path]:
    """A copy of the mini dataset extracted with two models of one dimension."""
    root = tmp_path_factory.mktemp("two") / "data"
    shutil.copytree(mini_dataset.root, root)
    dataset = Dataset(root, root / mini_dataset.face_dir.name, root / mini_dataset.video_dir.name)
    store = root.parent / "store"
    run_extract(
        dataset,
        store,
        models,
        models=[MODEL, MODEL_REG],
        weights={MODEL: models.weights, MODEL_REG: models.weights_reg},
    )
    return dataset, store


def test_two_models_cosine_of_frontal_features(
    two_models: tuple[Dataset, Path], tmp_path: Path
) -> None:
    _, store = two_models
    with pytest.raises(StoreError, match=r"holds 2 models .*; choose one with model= \(CLI"):
        read_report(store)
    summary = write_report(store, out=tmp_path / "r.html", model=MODEL)
    got = shown(summary.path)["comparisons"][MODEL_REG]
    faces = {
        model: {
            r["identity"]: r["features"] for r in store_rows(store, model) if r["role"] == "face"
        }
        for model in (MODEL, MODEL_REG)
    }
    expected = {}
    for identity, a in faces[MODEL].items():
        b = faces[MODEL_REG][identity]
        a64, b64 = np.array(a, np.float64), np.array(b, np.float64)
        expected[identity] = float(a64 @ b64 / np.linalg.norm(a64) / np.linalg.norm(b64))
    assert got["identities"] == len(expected) == 2
    assert got["cosine"].keys() == expected.keys()
    for identity, value in expected.items():
        assert got["cosine"][identity] == pytest.approx(value, abs=1e-5)
    assert f"{MODEL} vs {MODEL_REG}" in summary.path.read_text("utf-8")


def test_missing_image_files_become_placeholders(
    two_models: tuple[Dataset, Path], tmp_path: Path
) -> None:
    dataset, store = two_models
    moved = tmp_path / "moved"
    # Images deleted after extraction: the frontal images are gone.
    shutil.copytree(dataset.face_dir, moved)
    for path in dataset.face_dir.iterdir():
        path.unlink()
    try:
        summary = write_report(store, out=tmp_path / "r.html", model=MODEL_REG)
    finally:
        for path in moved.iterdir():
            shutil.move(path, dataset.face_dir / path.name)
    got = shown(summary.path)
    assert summary.unshown_images == 2 == len(got["unshown_images"])
    assert {problem for _, _, problem in got["unshown_images"]} == {"missing"}
    html = summary.path.read_text("utf-8")
    assert html.count("<div class='placeholder' title='missing'>missing</div>") == 2
    assert "Images not shown (2)" in html
    assert "2 gallery images could not be shown" in summary.format()
    if chromium_missing_reason() is None:  # placeholders are not broken images
        browser_check(summary.path, tmp_path)


def _result(identity: str, role: str, index: int | None, features: Any) -> ImageResult:
    kps = np.array([[30, 40], [60, 40], [45, 55], [33, 70], [57, 70]], np.float32) + (index or 0)
    return ImageResult(
        task=ImageTask(identity, role, Path(f"/nowhere/{identity}/{role}{index}.jpg"), index),
        status="ok",
        error=None,
        detection=Detection(np.array([10, 10, 90, 100], np.float32), kps, 0.9),
        features={} if features is None else {"m": features},
        width=100,
        height=120,
        file_size=1,
    )


def write_model(store: Path, model: str, features: dict[str, list[Any]]) -> None:
    """A model written through the store's own row and partition writers."""
    dim = len(next(iter(features.values()))[0])
    provenance = {"model": model, "feature_dim": dim, "base_dir": "/nowhere"}
    table = Store(store, create=True).table(model)
    table.claim(provenance, row_schema(dim), overwrite=False)
    writer = TableWriter(table, provenance, command="test")
    for identity, vectors in features.items():
        results = [
            _result(identity, "face" if i == 0 else "frame", None if i == 0 else i - 1, v)
            for i, v in enumerate(vectors)
        ]
        for r in results:
            r.features = {model: r.features["m"]} if r.features else {}
        rows = identity_table(
            results,
            model=model,
            dim=dim,
            base_dir=Path("/"),
            extracted_at=datetime.now(timezone.utc),
        )
        writer.add(identity, rows, fingerprint="t")
    writer.flush()


def test_norms_flag_nan_zero_and_non_unit(tmp_path: Path) -> None:
    unit = np.eye(8, dtype=np.float32)
    write_model(
        tmp_path / "store",
        "m8",
        {
            "a": [unit[0], unit[1] * np.float32(np.nan), unit[2] * 2, np.zeros(8, np.float32)],
            "b": [unit[3], unit[4] * np.float32(1 + NORM_TOLERANCE / 2), unit[5]],
        },
    )
    data = read_report(tmp_path / "store")
    assert (data.norms.checked, data.norms.non_finite, data.norms.zero) == (7, 1, 1)
    assert data.norms.non_unit == 1  # the norm 2; 1 + tolerance/2 is within tolerance
    assert [f.norm for f in data.norms.flagged][1:] == [2.0, 0.0]
    assert np.isnan(data.norms.flagged[0].norm)
    summary = write_report(tmp_path / "store", out=tmp_path / "r.html")
    html = summary.path.read_text("utf-8")
    assert "3 flagged: 1 NaN or infinite, 1 zero, 1 further than 0.001 from 1" in html
    assert summary.unshown_images == len(data.unshown_images) > 0  # /nowhere: placeholders


def test_models_of_different_dimensions_are_not_compared(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)

    def unit(n: int, dim: int) -> list[Any]:
        v = rng.standard_normal((n, dim)).astype(np.float32)
        return list(v / np.linalg.norm(v, axis=1, keepdims=True))

    write_model(tmp_path / "store", "small", {"a": unit(3, 8), "b": unit(2, 8)})
    write_model(tmp_path / "store", "large", {"a": unit(3, 16), "b": unit(2, 16)})
    summary = write_report(tmp_path / "store", out=tmp_path / "r.html", model="small")
    assert shown(summary.path)["comparisons"] == {"large": {"comparable": False, "dims": [8, 16]}}
    html = summary.path.read_text("utf-8")
    assert "<p class='muted'>Cannot be compared: small has 8 dimensions and large has 16." in html
    # Mixed dims make the features FLOAT[]: array functions need one model, and say so.
    sql = "SELECT array_cosine_similarity(features, face_features) AS s FROM valid_frames"
    with pytest.raises(StoreError, match=r"different dimensions.*\(CLI: --model NAME\)"):
        Store(tmp_path / "store").sql(sql)

    with pytest.raises(StoreError, match=r"different dimensions.*\(CLI: --model NAME\)"):
        Store(tmp_path / "store").sql(sql)
    assert Store(tmp_path / "store").sql(sql, model="small").num_rows == 3


# --- a real browser ------------------------------------------------------------------------


def browser_check(page: Path, tmp_path: Path) -> None:
    """Open `page` in headless chromium: no console error, no broken image, a screenshot."""
    reason = chromium_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with Browser(tmp_path / "chromium-profile") as browser:
        result = browser.open_page(page)
        assert result.problems == []
        assert result.image_count > 0
        shot = tmp_path / "report.png"
        shot.write_bytes(result.screenshot)
        with Image.open(shot) as image:
            assert (
                image.format == "PNG" and image.size[0] >= 1200 and image.size[1] > 900
            )  # whole page
            colours = image.convert("L").getextrema()
        assert colours[1] - colours[0] > 100  # not a blank page
        # the table sorts: by identity up, then down, then back to worst first by "#"
        js = "Array.from(document.querySelectorAll('#identity-table tbody tr td:nth-child(2)'))"
        names = f"JSON.stringify({js}.map(function (c) {{ return c.textContent; }}))"
        before = json.loads(browser.evaluate(browser.session, names))
        browser.evaluate(
            browser.session, "document.querySelectorAll('#identity-table th')[1].click()"
        )
        assert json.loads(browser.evaluate(browser.session, names)) == sorted(before)
        browser.evaluate(
            browser.session, "document.querySelectorAll('#identity-table th')[1].click()"
        )
        descending = sorted(before, reverse=True)
        assert json.loads(browser.evaluate(browser.session, names)) == descending
        browser.evaluate(
            browser.session, "document.querySelectorAll('#identity-table th')[0].click()"
        )
        assert json.loads(browser.evaluate(browser.session, names)) == before
        # Nothing spills out of its box: placeholders hold their text, captions their words.
        overflowing = """JSON.stringify(Array.from(document.querySelectorAll(
            '.placeholder, figcaption')).filter(function (e) {
              return e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1;
            }).map(function (e) { return e.textContent.slice(0, 40); }))"""
        placeholders = "document.querySelectorAll('.placeholder').length"
        assert browser.evaluate(browser.session, placeholders) > 0  # the bad frames
        assert json.loads(browser.evaluate(browser.session, overflowing)) == []
        # A caption breaks between words, not inside "unreadable" or "det_thresh".
        css = "getComputedStyle(document.querySelector('figcaption')).wordBreak"
        assert browser.evaluate(browser.session, css) == "normal"


def test_axes_read_plainly() -> None:
    """No offset notation (1e-7+1), no fractional counts, norms shown around 1."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from featstore.report.plots import _draw_panel

    figure = Figure()
    FigureCanvasAgg(figure)
    norms_ax, counts_ax = figure.subplots(1, 2)
    norms = np.float32(1) + np.arange(5, dtype=np.float32) * np.float32(1e-7)
    _draw_panel(norms_ax, Panel("n", "norm", [Series("", norms)], log_y=True, min_span=4e-3))
    _draw_panel(counts_ax, Panel("c", "x", [Series("", np.array([1.0, 2.0, 2.0]))]))
    figure.canvas.draw()
    assert norms_ax.xaxis.get_offset_text().get_text() == ""
    low, high = norms_ax.get_xlim()
    assert high - low >= 4e-3 and low < 1 < high
    assert not any(t.get_text() for t in norms_ax.yaxis.get_minorticklabels())
    assert all(float(t).is_integer() for t in counts_ax.get_yticks())


def test_placeholders_are_short_and_comparisons_not_errors(tmp_path: Path) -> None:
    from featstore.report.html import PLACEHOLDER_CHARS

    write_model(tmp_path / "store", "m8", {"a": [np.eye(8, dtype=np.float32)[0]] * 2})
    html = write_report(tmp_path / "store", out=tmp_path / "r.html").path.read_text("utf-8")
    shown = re.findall(r"<div class='placeholder' title='([^']*)'>([^<]*)</div>", html)
    assert shown and all(len(text) <= PLACEHOLDER_CHARS for _, text in shown)
    assert all(len(title) >= len(text) for title, text in shown)


def test_report_in_a_real_browser(report: ReportSummary, tmp_path: Path) -> None:
    browser_check(report.path, tmp_path)


def test_browser_check_catches_a_broken_page(tmp_path: Path) -> None:
    reason = chromium_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    page = tmp_path / "broken.html"
    page.write_text(
        "<html><body><img alt='gone' src='data:image/png;base64,AAAA'>"
        "<script>console.error('boom'); missing_function();</script></body></html>"
    )
    with Browser(tmp_path / "profile") as browser:
        problems = browser.open_page(page).problems
    assert "console error: boom" in problems
    assert "broken image: gone" in problems
    assert any("missing_function is not defined" in p for p in problems)


def test_summary_line_of_one_identity_is_singular() -> None:
    from featstore.report.build import ReportSummary

    line = ReportSummary(Path("r.html"), "m", 1, 1, 1 << 20, 0.5, 0).format()
    assert "(1 identity, 1 frame, 1.0 MiB)" in line, line
