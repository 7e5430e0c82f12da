"""The benches build their data with the store's current schema (a new column must not
break `make bench`: bench_store_scale stopped at its first batch when the stable pose's
columns were added)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))

import bench_store_scale  # noqa: E402 - from bench/, which is not a package

from featstore.store import Store  # noqa: E402


def test_bench_store_scale_builds_a_store_of_the_current_schema(tmp_path: Path) -> None:
    bench_store_scale.build_store(tmp_path / "store", 30, 8)
    snapshot = Store(tmp_path / "store").model(bench_store_scale.MODEL)
    assert snapshot.dim == 8 and snapshot.row_count() == 30 * (bench_store_scale.FRAMES + 1)
    with snapshot.connect() as con:
        assert con.execute("SELECT count(*) FROM valid_frames").fetchone() == (30 * 10,)
        angles = con.execute("SELECT count(sqpnp_euler_angles) FROM images").fetchone()
        assert angles == (30 * 11,)
