"""The report's who-is-who section: suspected pairs with frontal images, copies in two places."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ARCFACE, COPIED_FRAME, COPIED_IDENTITY, MODEL, Extracted, copy_store

from featstore.neighbors import find_neighbors
from featstore.report.build import read_report, write_report


@pytest.fixture(scope="module")
def searched(neighbors_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = copy_store(neighbors_store, tmp_path_factory.mktemp("report_neighbors") / "store")
    find_neighbors(store)
    return store


def test_pairs_show_both_frontal_images_and_copies_both_places(searched: Path) -> None:
    section = read_report(searched, model=MODEL).neighbors
    assert section is not None and section.model == ARCFACE
    first = section.pairs[0]
    assert (first.left_identity, first.right_identity) == ("person_001", COPIED_IDENTITY)
    assert first.left and first.right and first.left.data_uri and first.right.data_uri
    assert first.left.image_path == "face/person_001.jpg"
    assert first.right.image_path == f"face/{COPIED_IDENTITY}.jpg"
    shown = {(c.left.image_path, c.right.image_path) for c in section.copies if c.left and c.right}
    assert len(section.copies) <= section.copies_total
    copied = ("video/person_002/frame_0001.jpg", f"video/person_003/{COPIED_FRAME}")
    top = {(c.left.image_path, c.right.image_path) for c in section.copies if c.cosine > 0.9999}
    assert copied in top and copied in shown  # type: ignore[union-attr]
    assert section.threshold == pytest.approx(0.5) and section.copy_threshold == pytest.approx(0.95)


def test_the_page_has_the_section(searched: Path, tmp_path: Path) -> None:
    write_report(searched, model=MODEL, out=tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert "Who is who" in page and "duplicate_identity(identity)" in page
    assert COPIED_FRAME in page


def test_without_a_table_the_section_says_how_to_make_one(extracted: Extracted) -> None:
    data = read_report(extracted.store, model=MODEL)
    assert data.neighbors is None
