"""The extract summary's words: counts of one are singular, the dry run says what it loaded."""

from __future__ import annotations

import dataclasses
import re

from featstore.extraction.summary import ExtractSummary
from featstore.store.query import StoreCounts


def _summary(**kwargs: object) -> ExtractSummary:
    base = ExtractSummary(
        store="store",
        models=("dinov2_vits14",),
        device="cpu",
        detector_providers=("CPUExecutionProvider",),
        identities_in_input=2,
        identities_extracted=1,
        images_extracted=1,
        run_counts={"ok": 1},
        face_without_video=(),
        video_without_face=(),
        ambiguous_faces=(),
        ignored_files=0,
        elapsed_s=1.0,
        timings={},
        store_counts={"dinov2_vits14": StoreCounts(1, 1, {"ok": 1}, {"ok": 1})},
    )
    return dataclasses.replace(base, **kwargs)  # type: ignore[arg-type]


def test_a_count_of_one_is_singular() -> None:
    text = _summary(
        limit=1,
        without_inputs=("gone",),
        without_pose=1,
        skipped_entries=("x.txt",),
        shard=(0, 1),
        identities_in_input=1,
    ).format()
    assert re.findall(r"\b1 (?:identities|images|entries|inputs)\b", text) == [], text
    assert "extracted 1 image of 1 identity" in text
    assert "store [dinov2_vits14]: 1 identity, 1 valid" in text
    assert "limited to the first 1 identity by name" in text
    assert "1 identity in the store has no inputs any more" in text
    assert "1 image with a face has no head pose" in text
    assert "shard 0/1 (1 identity)" in text
    dry = _summary(dry_run=True, identities_in_input=1).format()
    assert "would extract 1 image of 1 identity" in dry
    assert "0 of 1 identity up to date" in dry


def test_dry_run_says_what_it_loaded() -> None:
    """The dry run loads the detector (a pack that does not load fails there) but not DINOv2."""
    text = _summary(dry_run=True, model_files=("detector: det.onnx",)).format()
    assert "checked, not loaded" not in text
    assert "the detector loaded" in text
