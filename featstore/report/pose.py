"""The head pose in `featstore report` (`face000-pose-v1`, docs/formats.md): its histograms
and captions.

The seed's angle names are kept (yaw, pitch, roll, sic): for an upright frontal face its
"roll" is near ±180°, and a left-right turn shows in its "pitch". The roll histogram is
drawn modulo 360 (in [0, 360)), so upright faces make one bar at 180 instead of two at the
ends; the statistics table gives circular statistics of all three angles (`Stats.of_angles`:
the mean direction, the circular standard deviation, and min/median/max unwrapped around
that mean), so rolls near ±180 have a mean near ±180, not near 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from featstore.report.plots import Panel, Series

if TYPE_CHECKING:
    import duckdb

POSE_NAMES = ("yaw", "pitch", "roll")


@dataclass(frozen=True)
class PoseDistribution:
    """The seed's (yaw, pitch, roll) over the frames of `valid_frames` that have a pose."""

    values: dict[str, NDArray[np.float64]]  # POSE_NAMES -> degrees
    frames_without: int  # frames of valid_frames with no pose (degenerate keypoints, ...)
    available: bool  # False: the store was made before the pose columns


def has_pose_columns(con: duckdb.DuckDBPyConnection) -> bool:
    return "euler_angles" in {row[0] for row in con.execute("DESCRIBE images").fetchall()}


def read_pose(con: duckdb.DuckDBPyConnection) -> PoseDistribution:
    """The pose of every frame of `valid_frames` (after --where), from one query."""
    if not has_pose_columns(con):
        empty = {name: np.zeros(0) for name in POSE_NAMES}
        return PoseDistribution(empty, 0, available=False)
    columns = ", ".join(f"euler_angles[{i}] AS {name}" for i, name in enumerate(POSE_NAMES, 1))
    table = con.sql(f"SELECT {columns} FROM valid_frames WHERE euler_angles IS NOT NULL")
    values = {
        name: np.asarray(column.to_numpy(zero_copy_only=False), np.float64)
        for name, column in zip(POSE_NAMES, table.to_arrow_table().columns, strict=True)
    }
    without = con.execute("SELECT count(*) FROM valid_frames WHERE euler_angles IS NULL")
    return PoseDistribution(values, int(without.fetchall()[0][0]), available=True)


def pose_panels(pose: PoseDistribution) -> list[Panel]:
    """One histogram per angle; roll modulo 360 (see the module's docstring)."""
    return [
        Panel(
            f"{name} (mod 360; 180 = upright)" if name == "roll" else name,
            "degrees",
            [Series("", np.mod(values, 360.0) if name == "roll" else values)],
            bins=72,
        )
        for name, values in pose.values.items()
    ]


def pose_heading(pose: PoseDistribution | None) -> str:
    """The HTML heading and note of the report's pose section."""
    if pose is None or not pose.available:
        return "<p class='muted'>No head pose: the store predates the pose columns.</p>"
    return (
        f"<h3 id='pose'>Head pose (face000-pose-v1, degrees, over the "
        f"{pose.values['yaw'].size} frames of <code>valid_frames</code> with a pose; "
        f"{pose.frames_without} without)</h3>"
        "<p class='muted'>EPnP from the five keypoints to a mean face, focal length = image "
        "width. The names are the seed's (sic): an upright frontal face has roll near "
        "±180°, and a left-right turn shows in pitch.</p>"
    )


def pose_caption(euler_angles: Sequence[float] | None) -> str:
    """`yaw 1.2° pitch -3.4° roll 179.0°` for a thumbnail, or `no pose`."""
    if euler_angles is None:
        return "no pose"
    return " ".join(
        f"{name} {value:.1f}°" for name, value in zip(POSE_NAMES, euler_angles, strict=True)
    )
