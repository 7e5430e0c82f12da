"""The Dataset's cache key sees every change of a JSON source, even one size and mtime hide."""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from conftest import Extracted

from featstore import FeatureDataset
from featstore.trainer_json.export import export_json


def test_same_size_rewrite_with_mtime_restored_is_seen(
    extracted: Extracted, tmp_path: Path
) -> None:
    source = tmp_path / "valid_images.json"
    export_json(extracted.store, out=source, base_dir=extracted.dataset.root)
    cache = tmp_path / "cache"
    first = FeatureDataset(source, cache_dir=cache)
    before = first[0]["input_features"].clone()

    # The first frame's first feature: its leading significant digit, changed in place.
    data = source.read_bytes()
    match = re.compile(rb'"features":\[-?0?\.?0*([1-8])').search(data)
    assert match is not None
    at = match.start(1)
    changed = data[:at] + bytes([data[at] + 1]) + data[at + 1 :]
    stat = source.stat()
    source.write_bytes(changed)
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (source.stat().st_size, source.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)

    again = FeatureDataset(source, cache_dir=cache)
    assert again.cache_folder != first.cache_folder
    after = again[0]["input_features"]
    assert not torch.equal(after, before)
    assert torch.equal(after[1:], before[1:])  # exactly the one value rewritten
