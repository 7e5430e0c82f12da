"""The report read one identity range at a time (featstore.report.ranges, issue 25) shows
exactly what it shows read whole: same counts, tables, samples and histograms, statistics
equal up to the order of summation, on a store of many data files whose identity ranges
overlap (each range reads only the files that hold its identities)."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import featstore.report.ranges as ranges_module
from featstore.extraction.decoding import ImageTask
from featstore.extraction.detection import Detection
from featstore.extraction.pipeline import row_schema
from featstore.extraction.rows import ImageResult, add_poses, identity_table
from featstore.report.build import ReportData, read_report
from featstore.report.ranges import IdentityRange, each_range, identity_ranges
from featstore.report.stats import Distribution
from featstore.store import Store
from featstore.store.writer import TableWriter

MODEL, DIM, IDENTITIES, PER_COMMIT = "m8", 8, 30, 4


def _image(identity: str, index: int | None, rng: np.random.Generator) -> ImageResult:
    """An image of `identity` (index None: its frontal one): ok mostly, some no_face,
    some features NaN or not of norm 1, keypoints moved so the poses differ."""
    role = "face" if index is None else "frame"
    task = ImageTask(identity, role, Path(f"/nowhere/{identity}/{role}{index}.jpg"), index)
    if rng.random() < 0.15:
        return ImageResult(task=task, status="no_face", error="no face found")
    kps = np.array([[30, 40], [60, 40], [45, 55], [33, 70], [57, 70]], np.float32)
    kps += rng.normal(0, 4, kps.shape).astype(np.float32)
    vector = rng.standard_normal(DIM).astype(np.float32)
    vector /= np.linalg.norm(vector)
    if rng.random() < 0.05:
        vector *= np.float32(np.nan if rng.random() < 0.5 else 1.5)
    return ImageResult(
        task=task,
        status="ok",
        error=None,
        detection=Detection(np.array([10, 10, 90, 100], np.float32), kps, float(rng.random())),
        features={MODEL: vector},
        width=100,
        height=120,
        file_size=1,
    )


@pytest.fixture(scope="module")
def many_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """IDENTITIES identities committed PER_COMMIT at a time in shuffled order: one data
    file per commit, their identity ranges overlapping."""
    store = tmp_path_factory.mktemp("ranges") / "store"
    provenance = {"model": MODEL, "feature_dim": DIM, "base_dir": "/nowhere"}
    table = Store(store, create=True).table(MODEL)
    table.claim(provenance, row_schema(DIM), overwrite=False)
    writer = TableWriter(table, provenance, command="test")
    rng = np.random.default_rng(0)
    names = [f"person_{i:03d}" for i in range(IDENTITIES)]
    random.Random(0).shuffle(names)
    for n, identity in enumerate(names, start=1):
        results = [_image(identity, None, rng)]
        results += [_image(identity, i, rng) for i in range(int(rng.integers(0, 7)))]
        add_poses(results)
        rows = identity_table(
            results,
            model=MODEL,
            dim=DIM,
            base_dir=Path("/"),
            extracted_at=datetime.now(timezone.utc),
        )
        writer.add(identity, rows, fingerprint="t")
        if n % PER_COMMIT == 0:
            writer.flush()
    writer.flush()
    return store


def test_ranges_cover_every_identity_and_name_their_files(
    many_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap = Store(many_files).feature_model(MODEL, None)
    # One identity a range: a file's last identity starts a range of its own.
    monkeypatch.setattr(ranges_module, "RANGE_ROWS", 1)
    found = identity_ranges(snap, located=True)
    assert len(snap.files) == -(-IDENTITIES // PER_COMMIT)
    assert len(found) == IDENTITIES and found[0].low is None and found[-1].high is None
    assert all(a.high == b.low for a, b in zip(found[:-1], found[1:], strict=True))
    # Each range names the files that hold its identities, and only those.
    with snap.connect(located=True) as con:
        for span in found:
            names = IdentityRange(span.low, span.high).condition()
            held = con.execute(f"SELECT DISTINCT _file FROM images WHERE {names}").fetchall()
            assert span.files is not None and {f for (f,) in held} <= set(span.files)
    assert any(span.files is not None and len(span.files) < len(snap.files) for span in found)
    assert all(r.files is None for r in identity_ranges(snap, located=False))


def test_each_range_restores_the_whole_view_after_an_error(many_files: Path) -> None:
    snap = Store(many_files).feature_model(MODEL, None)
    spans = identity_ranges(snap, located=True, rows=10)
    with snap.connect(located=True) as con:
        con.execute("ALTER VIEW images RENAME TO _report_images")
        con.execute("CREATE VIEW images AS SELECT * FROM _report_images")
        total = con.execute("SELECT count(*) FROM images").fetchall()[0][0]
        seen = 0
        with pytest.raises(RuntimeError):
            for _ in each_range(con, spans):
                seen += con.execute("SELECT count(*) FROM images").fetchall()[0][0]
                if seen:
                    raise RuntimeError("stop")
        assert 0 < seen < total
        assert con.execute("SELECT count(*) FROM images").fetchall()[0][0] == total


@pytest.mark.slow  # two reports, each reading ranges
def test_a_report_read_range_by_range_is_the_report_read_whole(
    many_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A --where that drops frames but keeps the rejected ones (they have no score).
    where = "status <> 'ok' OR det_score > 0.3"
    whole = read_report(many_files, where=where)
    monkeypatch.setattr(ranges_module, "RANGE_ROWS", 30)  # several files a range, or one
    split = read_report(many_files, where=where)
    assert (split.frames_selected, split.identities_selected, split.valid_selected) == (
        whole.frames_selected,
        whole.identities_selected,
        whole.valid_selected,
    )
    assert whole.identities_selected == IDENTITIES and whole.norms.flagged_total > 0
    assert (
        0
        < whole.frames_selected
        < Store(many_files).sql("SELECT count(*) AS n FROM frames").column("n")[0].as_py()
    )
    assert split.identities == whole.identities
    assert split.rejection_reasons == whole.rejection_reasons
    assert [g.identity for g in split.gallery] == [g.identity for g in whole.gallery]
    assert _images(split) == _images(whole) and whole.rejected
    assert [repr(f) for f in split.norms.flagged] == [repr(f) for f in whole.norms.flagged]  # NaN
    assert (split.norms.non_finite, split.norms.zero, split.norms.non_unit) == (
        whole.norms.non_finite,
        whole.norms.zero,
        whole.norms.non_unit,
    )
    for name, got, expected in _distributions(split, whole):
        assert got.histogram.edges.tolist() == expected.histogram.edges.tolist(), name
        assert got.histogram.counts.tolist() == expected.histogram.counts.tolist(), name
        a, b = got.stats, expected.stats
        assert (a.count, a.non_finite) == (b.count, b.non_finite), name
        # Sums in another order: the circular mean, and so the unwrapped values, may differ
        # in the last digits.
        for field in ("mean", "std", "minimum", "median", "maximum"):
            assert getattr(a, field) == pytest.approx(getattr(b, field), abs=1e-9), name


def _images(data: ReportData) -> list[tuple[Any, ...]]:
    return [(i.identity, i.role, i.frame_index, i.status) for i in data.rejected]


def _distributions(
    split: ReportData, whole: ReportData
) -> list[tuple[str, Distribution, Distribution]]:
    pairs = [(f"angle {n}", split.angles[n], whole.angles[n]) for n in whole.angles]
    pairs += [(f"score {r}", split.det_scores[r], whole.det_scores[r]) for r in whole.det_scores]
    pairs += [(f"norm {r}", split.norms.norms[r], v) for r, v in whole.norms.norms.items()]
    pairs += [
        (f"frames {n}", split.frames_per_identity[n], v)
        for n, v in whole.frames_per_identity.items()
    ]
    assert split.pose is not None and whole.pose is not None and whole.pose.stable is not None
    assert split.pose.stable is not None
    pairs += [(f"pose {n}", split.pose.values[n], v) for n, v in whole.pose.values.items()]
    pairs += [
        (f"stable {n}", split.pose.stable.values[n], v) for n, v in whole.pose.stable.values.items()
    ]
    pairs += [
        (f"gap {n}", split.pose.stable.disagreement[n], v)
        for n, v in whole.pose.stable.disagreement.items()
    ]
    return pairs
