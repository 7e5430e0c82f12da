"""The head pose in `featstore report`: yaw / pitch / roll histograms, the pose on thumbnails."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Extracted
from numpy.typing import NDArray
from store_checks import drop_columns, table_rows

from featstore.report.build import ReportData, read_report, write_report
from featstore.report.pose import DISAGREE_DEGREES, POSE_NAMES, pose_caption
from featstore.report.stats import Distribution, Stats
from featstore.report.tally import FINE_BINS
from featstore.store.fields import SQPNP_POSE_COLUMNS

SHOWN = re.compile(r"<script type='application/json' id='featstore-report'>(.*?)</script>", re.S)
POSE_COLUMNS = ["euler_angles", "rotation_matrix", "pose_landmarks_3d"]


def rows_of(store: Path) -> list[dict[str, Any]]:
    return table_rows(store).to_pylist()


@pytest.fixture(scope="module")
def data(extracted: Extracted) -> ReportData:
    return read_report(extracted.store)


def test_pose_histograms_are_those_of_valid_frames(extracted: Extracted, data: ReportData) -> None:
    rows = rows_of(extracted.store)
    faces_ok = {r["identity"] for r in rows if r["role"] == "face" and r["status"] == "ok"}
    frames = [
        r
        for r in rows
        if r["role"] == "frame" and r["status"] == "ok" and r["identity"] in faces_ok
    ]
    posed = [r for r in frames if r["euler_angles"] is not None]
    assert data.pose is not None and data.pose.available and posed
    assert data.pose.frames_without == len(frames) - len(posed)
    for i, name in enumerate(POSE_NAMES):
        expected = np.array([r["euler_angles"][i] for r in posed], np.float32)
        assert_circular(data.pose.values[name], expected, name)


def assert_circular(shown: Distribution, values: NDArray[np.float32], name: str) -> None:
    """The report's circular statistics and histogram (roll modulo 360) are numpy's over the
    same values (means up to the order of summation)."""
    array = values.astype(np.float64)
    expected, got = Stats.of_angles(array), shown.stats
    assert (got.count, got.non_finite) == (expected.count, expected.non_finite), name
    for field in ("mean", "std", "minimum", "maximum"):
        assert getattr(got, field) == pytest.approx(getattr(expected, field), abs=1e-6), name
    # The median from 65,536 fine bins over the circle (featstore.report.tally).
    assert got.median == pytest.approx(expected.median, abs=360.0 / FINE_BINS), name
    drawn = np.mod(array, 360.0) if name == "roll" else array
    counts, _ = np.histogram(drawn, bins=shown.histogram.edges)
    assert shown.histogram.counts.tolist() == counts.tolist(), name


def test_the_report_shows_the_pose(extracted: Extracted, tmp_path: Path) -> None:
    summary = write_report(extracted.store, out=tmp_path / "report.html")
    html = summary.path.read_text("utf-8")
    assert "<h3 id='pose'>Head pose (face000-pose-v1" in html
    assert "head pose histograms" in html
    match = SHOWN.search(html)
    assert match is not None
    shown = json.loads(match.group(1))["pose"]
    assert set(shown) == set(POSE_NAMES) and shown["yaw"]["count"] > 0
    # Each ok thumbnail of the gallery carries its three numbers.
    data = read_report(extracted.store)
    images = [i for g in data.gallery for i in [g.face, *g.frames] if i and i.status == "ok"]
    stored = {
        (r["identity"], r["role"], r["frame_index"]): r["euler_angles"]
        for r in rows_of(extracted.store)
    }
    assert images
    for image in images:
        euler = stored[(image.identity, image.role, image.frame_index)]
        assert image.euler_angles is not None
        np.testing.assert_array_equal(np.float32(image.euler_angles), np.float32(euler))
        assert pose_caption(image.euler_angles) in html


def test_pose_caption() -> None:
    assert pose_caption((1.234, -5.0, 179.96)) == "yaw 1.2° pitch -5.0° roll 180.0°"
    assert pose_caption(None) == "no pose"


def test_a_store_without_pose_columns_still_reports(extracted: Extracted, tmp_path: Path) -> None:
    store = Path(shutil.copytree(extracted.store, tmp_path / "store"))
    drop_columns(store, list(POSE_COLUMNS))
    summary = write_report(store, out=tmp_path / "report.html")
    assert "the store predates the pose columns" in summary.path.read_text("utf-8")
    data = read_report(store)
    assert data.pose is not None and not data.pose.available
    assert all(i.euler_angles is None for g in data.gallery for i in g.frames)


def test_angle_statistics_are_circular() -> None:
    """Rolls near ±180 (upright faces) average to ±180, not to 0 with a std of 179."""
    from featstore.report.stats import Stats

    rolls = np.array([179.0, -179.0, 178.0, -178.0, 180.0])
    s = Stats.of_angles(rolls)
    assert s.mean is not None and abs(abs(s.mean) - 180.0) < 1e-9
    assert s.std is not None and s.std < 2.0
    assert s.minimum is not None and s.maximum is not None and s.maximum - s.minimum == 4.0
    near_zero = Stats.of_angles(np.array([-10.0, 0.0, 10.0]))
    assert near_zero.mean == pytest.approx(0.0, abs=1e-9)
    assert near_zero.std == pytest.approx(Stats.of(np.array([-10.0, 0.0, 10.0])).std, rel=0.01)
    assert (near_zero.minimum, near_zero.median, near_zero.maximum) == (-10.0, 0.0, 10.0)


def test_the_report_and_its_json_use_circular_pose_statistics(data: ReportData) -> None:
    from featstore.report.summary_json import summary_json

    text = summary_json(data)
    shown = json.loads(text[text.index(">") + 1 : text.rindex("</script>")])["pose"]
    for name in POSE_NAMES:
        expected = data.pose.values[name].stats if data.pose else None
        assert expected is not None and shown[name]["mean"] == pytest.approx(expected.mean)


def test_the_stable_pose_is_shown_beside_face000s(
    extracted: Extracted, data: ReportData, tmp_path: Path
) -> None:
    """featstore-pose-sqpnp-v1 beside face000-pose-v1: both distributions, per frame how
    far they disagree (modulo 360), in the page and its JSON."""
    rows = rows_of(extracted.store)
    faces_ok = {r["identity"] for r in rows if r["role"] == "face" and r["status"] == "ok"}
    posed = [
        r
        for r in rows
        if r["role"] == "frame" and r["status"] == "ok" and r["identity"] in faces_ok
        if r["euler_angles"] is not None
    ]
    stable = data.pose.stable if data.pose else None
    assert stable is not None and stable.frames == len(posed) > 0 and stable.frames_without == 0
    gaps = []
    for r in posed:
        a, b = np.float32(r["euler_angles"]), np.float32(r["sqpnp_euler_angles"])
        gaps.append(np.abs((a.astype(np.float64) - b + 180.0) % 360.0 - 180.0))
    for i, name in enumerate(POSE_NAMES):
        expected = np.array([r["sqpnp_euler_angles"][i] for r in posed], np.float32)
        assert_circular(stable.values[name], expected, name)
        gap = Stats.of(np.array([g[i] for g in gaps]))
        shown_gap = stable.disagreement[name].stats
        assert shown_gap.count == gap.count == stable.disagreement[name].histogram.total
        for field in ("mean", "minimum", "maximum"):
            assert getattr(shown_gap, field) == pytest.approx(getattr(gap, field), abs=1e-4), name
        assert gap.minimum is not None and gap.maximum is not None
        bound = (gap.maximum - gap.minimum) / FINE_BINS + 1e-4
        assert shown_gap.median == pytest.approx(gap.median, abs=bound), name
    disagreeing = sum(max(g) > DISAGREE_DEGREES for g in gaps)
    assert stable.disagreeing() == disagreeing

    html = write_report(extracted.store, out=tmp_path / "report.html").path.read_text("utf-8")
    assert "Beside it, <b>featstore-pose-sqpnp-v1</b>" in html
    assert f"they disagree by more than 5° in some angle on {disagreeing} (" in html
    assert "yaw, featstore-pose-sqpnp-v1 (circular)" in html
    assert "pitch: |face000-pose-v1 - featstore-pose-sqpnp-v1|" in html
    match = SHOWN.search(html)
    assert match is not None
    shown = json.loads(match.group(1))["pose_stable"]
    assert shown["definition"] == "featstore-pose-sqpnp-v1"
    assert shown["frames"] == len(posed) and shown["disagreeing_frames"] == disagreeing
    assert set(shown["angles"]) == set(shown["disagreement"]) == set(POSE_NAMES)


def test_a_store_without_the_stable_pose_says_how_to_add_it(
    extracted: Extracted, tmp_path: Path
) -> None:
    store = Path(shutil.copytree(extracted.store, tmp_path / "store"))
    drop_columns(store, list(SQPNP_POSE_COLUMNS))
    data = read_report(store)
    assert data.pose is not None and data.pose.available and data.pose.stable is None
    html = write_report(store, out=tmp_path / "report.html").path.read_text("utf-8")
    assert "No featstore-pose-sqpnp-v1" in html and "featstore derive</code> adds it" in html
