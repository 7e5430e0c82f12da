"""The report against hostile names and paths: the embedded JSON stays JSON, and no file
outside the extraction's base dir is read."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import Dataset, Extracted, Models, run_extract
from PIL import Image

from featstore.report.build import read_report, write_report
from featstore.report.gallery import OUTSIDE_BASE_DIR, make_thumbnail
from featstore.report.summary_json import script_json
from featstore.trainer_json.export import export_json
from featstore.trainer_json.importer import import_json

HOSTILE = "<!--<script>"
EMBEDDED = re.compile(r"<script type='application/json' id='featstore-report'>(.*?)</script>", re.S)


def test_script_json_keeps_the_meaning_and_drops_markup() -> None:
    value = {HOSTILE: "a & b > c \u2028 \u2029 </script>"}
    text = script_json(json.dumps(value, ensure_ascii=False))
    assert not set("<>&\u2028\u2029") & set(text)
    assert json.loads(text) == value


def test_identity_named_like_markup_keeps_the_json_block_whole(
    tmp_path: Path, mini_dataset: Dataset, models: Models
) -> None:
    root = tmp_path / "data"
    shutil.copytree(mini_dataset.root, root)
    face = sorted((root / "face").iterdir())[0]
    face.rename(face.with_name(f"{HOSTILE}.jpg"))
    (root / "video" / face.stem).rename(root / "video" / HOSTILE)
    store = tmp_path / "store"
    run_extract(Dataset(root, root / "face", root / "video"), store, models)
    html = write_report(store, out=tmp_path / "r.html").path.read_text("utf-8")
    match = EMBEDDED.search(html)
    assert match is not None
    block = match.group(1)
    assert "<" not in block  # so `<!--<script>` cannot swallow the next </script>
    assert HOSTILE in [row[0] for row in json.loads(block)["identity_table"]]
    # The sort script follows in a <script> of its own, after the JSON block ended.
    assert "<script>" in html[match.end() :]


def _secret(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), (200, 10, 10)).save(path)
    return path


def test_images_outside_the_base_dir_are_listed_never_read(
    extracted: Extracted, tmp_path: Path
) -> None:
    """An imported JSON can hold any path; the report reads only those under its base dir."""
    base = extracted.dataset.root
    exported = tmp_path / "json" / "valid_images.json"
    exported.parent.mkdir()
    export_json(extracted.store, out=exported, base_dir=base)
    document = json.loads(exported.read_text("utf-8"))
    name = sorted(document)[0]
    outside = tmp_path / "outside"
    document[name]["face_image_path"] = "../" * len(base.parts) + _secret(
        outside / "face.png"
    ).as_posix().lstrip("/")
    for i, frame in enumerate(document[name]["video_data"]):
        frame["image_path"] = _secret(outside / f"frame{i}.png").as_posix()  # absolute
    exported.write_text(json.dumps(document), "utf-8")
    store = tmp_path / "store"
    import_json(exported, store=store, base_dir=base)

    data = read_report(store, gallery_identities=1000)
    shown = [i for i in data.gallery if i.identity == name]
    assert shown, "the identity is in the gallery"
    images = ([shown[0].face] if shown[0].face else []) + shown[0].frames
    assert images
    for image in images:
        assert image.thumbnail.problem == OUTSIDE_BASE_DIR
        assert image.thumbnail.data_uri is None
    listed = {(i.identity, i.thumbnail.problem) for i in data.unshown_images}
    assert (name, OUTSIDE_BASE_DIR) in listed
    # Images under the base dir are still drawn.
    others = [i.face for i in data.gallery if i.identity != name and i.face is not None]
    assert any(image.thumbnail.data_uri for image in others)


def test_thumbnail_refuses_paths_that_leave_the_base_dir(tmp_path: Path) -> None:
    base = tmp_path / "base"
    inside = _secret(base / "face" / "a.png")
    secret = _secret(tmp_path / "secret.png")
    assert make_thumbnail(base.as_posix(), "face/a.png").data_uri is not None
    assert make_thumbnail(base.as_posix(), inside.as_posix()).data_uri is not None
    for path in ("../secret.png", "face/../../secret.png", secret.as_posix()):
        thumbnail = make_thumbnail(base.as_posix(), path)
        assert (thumbnail.data_uri, thumbnail.problem) == (None, OUTSIDE_BASE_DIR), path
    assert make_thumbnail(None, secret.as_posix()).data_uri is None


def test_a_huge_png_is_refused_by_its_pixel_count_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 0.5 MB 13000x13000 PNG cost the report 1.5 GB and 6 s: PNG has no draft mode, so
    images above the pixel budget are not decoded and the page says why."""
    from PIL import Image

    from featstore.report import gallery

    base = tmp_path / "base"
    base.mkdir()
    Image.new("L", (4000, 3000)).save(base / "huge.png")  # 12 MP: above a budget of 1 MP
    Image.new("RGB", (4000, 3000)).save(base / "huge.jpg", quality=50)
    monkeypatch.setattr(gallery, "MAX_DECODED_PIXELS", 1_000_000)
    refused = make_thumbnail(base.as_posix(), "huge.png")
    drafted = make_thumbnail(base.as_posix(), "huge.jpg")  # JPEG decodes at 1/8 scale
    assert refused.data_uri is None and refused.problem is not None
    assert "4000x3000" in refused.problem and "not decoded" in refused.problem
    assert drafted.data_uri is not None and drafted.problem is None
