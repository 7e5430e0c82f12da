"""The report's identity-consistency section (ArcFace): worst frames first, with thumbnails."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ARCFACE, INTRUDER, MODEL, Extracted
from test_report import shown

import featstore.report.build as build
import featstore.report.ranges as ranges
from featstore.report.build import read_report, write_report
from featstore.store import Store


def _cosines(store: Path) -> list[tuple[str, float]]:
    rows = Store(store).sql(
        "SELECT image_path, face_cosine FROM identity_consistency ORDER BY face_cosine"
    )
    return list(zip(*(rows.column(c).to_pylist() for c in rows.column_names), strict=True))


def test_worst_frames_first_beside_their_frontal_image(consistency_store: Path) -> None:
    data = read_report(consistency_store, model=MODEL)
    section = data.consistency
    assert section is not None and section.model == ARCFACE
    expected = _cosines(consistency_store)
    assert [s.frame.image_path for s in section.worst] == [p for p, _ in expected]
    assert [s.face_cosine for s in section.worst] == pytest.approx([c for _, c in expected])
    first = section.worst[0]
    assert first.frame.image_path.endswith(INTRUDER)
    assert first.frame.data_uri and first.face and first.face.data_uri
    assert first.face.image_path == "face/person_000.jpg"
    assert (section.frames_checked, section.frames_below) == (len(expected), 0)


def test_the_section_read_one_identity_at_a_time_is_the_same(
    consistency_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    where = "NOT suspicious_frame(image_path, min_cosine := 0.6)"  # and the frames it keeps
    whole = read_report(consistency_store, model=MODEL, where=where).consistency
    monkeypatch.setattr(ranges, "CONSISTENCY_ROWS", 1)
    monkeypatch.setattr(build, "CONSISTENCY_ROWS", 1)
    split = read_report(consistency_store, model=MODEL, where=where).consistency
    assert whole is not None and split is not None and len(whole.worst) > 1
    assert split.summary() == whole.summary()


def test_section_follows_where(consistency_store: Path) -> None:
    where = "NOT suspicious_frame(image_path, min_cosine := 0.6)"
    section = read_report(consistency_store, model=MODEL, where=where).consistency
    assert section is not None
    assert [s.frame.image_path for s in section.worst] == [
        p for p, _ in _cosines(consistency_store) if not p.endswith(INTRUDER)
    ]


def test_the_page_shows_the_section(consistency_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    write_report(consistency_store, out=out, model=ARCFACE)
    html = out.read_text("utf-8")
    assert "id='consistency'" in html
    assert html.count("<figure style='width: 272px'>") == len(_cosines(consistency_store))
    numbers = shown(out)["consistency"]
    assert numbers["model"] == ARCFACE and numbers["threshold"] == 0.3
    assert numbers["worst"][0][1].endswith(INTRUDER)


def test_without_arcface_the_section_says_how(extracted: Extracted, tmp_path: Path) -> None:
    assert read_report(extracted.store).consistency is None
    out = tmp_path / "report.html"
    write_report(extracted.store, out=out)
    assert "featstore extract --model arcface" in out.read_text("utf-8")
    assert shown(out)["consistency"] is None
