"""The head pose in `featstore report` (`face000-pose-v1`, docs/formats.md): its histograms
and captions.

The seed's angle names are kept (yaw, pitch, roll, sic): for an upright frontal face its
"roll" is near ±180°, and a left-right turn shows in its "pitch". The roll histogram is
drawn modulo 360 (in [0, 360)), so upright faces make one bar at 180 instead of two at the
ends; the statistics table gives circular statistics of all three angles (`Stats.of_angles`:
the mean direction, the circular standard deviation, and min/median/max unwrapped around
that mean), so rolls near ±180 have a mean near ±180, not near 0.

Beside face000-pose-v1, where the store has it, the stable definition
`featstore-pose-sqpnp-v1` (docs/pose.md): each angle's histogram shows both, and a panel
shows how far they disagree per frame (modulo 360), with the share of frames where they
disagree by more than DISAGREE_DEGREES.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from featstore.report.plots import Panel, Series
from featstore.store.fields import SQPNP_POSE_COLUMNS

if TYPE_CHECKING:
    import duckdb

POSE_NAMES = ("yaw", "pitch", "roll")
BASE, STABLE = "face000-pose-v1", "featstore-pose-sqpnp-v1"
_STABLE_ANGLES = SQPNP_POSE_COLUMNS[0]
DISAGREE_DEGREES = 5.0  # a per-frame disagreement above this is counted apart


@dataclass(frozen=True)
class StablePose:
    """featstore-pose-sqpnp-v1 over the frames that have both definitions' poses."""

    values: dict[str, NDArray[np.float64]]  # POSE_NAMES -> degrees
    disagreement: dict[str, NDArray[np.float64]]  # POSE_NAMES -> |face000 - stable| mod 360
    frames_without: int  # frames with face000-pose-v1 but not this (run `featstore derive`)

    @property
    def frames(self) -> int:
        return int(self.values["yaw"].size)

    def disagreeing(self) -> int:
        """Frames where some angle differs by more than DISAGREE_DEGREES."""
        if not self.frames:
            return 0
        gaps = np.column_stack([self.disagreement[name] for name in POSE_NAMES])
        return int((gaps.max(axis=1) > DISAGREE_DEGREES).sum())


@dataclass(frozen=True)
class PoseDistribution:
    """The seed's (yaw, pitch, roll) over the frames of `valid_frames` that have a pose."""

    values: dict[str, NDArray[np.float64]]  # POSE_NAMES -> degrees
    frames_without: int  # frames of valid_frames with no pose (degenerate keypoints, ...)
    available: bool  # False: the store was made before the pose columns
    stable: StablePose | None = None  # None: the store predates featstore-pose-sqpnp-v1


def has_pose_columns(con: duckdb.DuckDBPyConnection) -> bool:
    return "euler_angles" in _columns(con)


def _columns(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {row[0] for row in con.execute("DESCRIBE images").fetchall()}


def read_pose(con: duckdb.DuckDBPyConnection) -> PoseDistribution:
    """The pose of every frame of `valid_frames` (after --where), both definitions where
    the store has them, from one query."""
    columns = _columns(con)
    if "euler_angles" not in columns:
        empty = {name: np.zeros(0) for name in POSE_NAMES}
        return PoseDistribution(empty, 0, available=False)
    stable = _STABLE_ANGLES in columns
    selected = [f"euler_angles[{i}]" for i in range(1, 4)]
    if stable:
        selected += [f"{_STABLE_ANGLES}[{i}]" for i in range(1, 4)]
    table = con.sql(
        f"SELECT {', '.join(selected)} FROM valid_frames WHERE euler_angles IS NOT NULL"
    ).to_arrow_table()
    arrays = [np.asarray(c.to_numpy(zero_copy_only=False), np.float64) for c in table.columns]
    values = dict(zip(POSE_NAMES, arrays[:3], strict=True))
    without = con.execute("SELECT count(*) FROM valid_frames WHERE euler_angles IS NULL")
    frames_without = int(without.fetchall()[0][0])
    if not stable:
        return PoseDistribution(values, frames_without, available=True)
    # A null list gives null elements: NaN in all three, or in none.
    both = ~np.isnan(arrays[3]) if arrays[3].size else np.zeros(0, bool)
    stable_values = {name: a[both] for name, a in zip(POSE_NAMES, arrays[3:], strict=True)}
    gaps = {
        name: np.abs((values[name][both] - stable_values[name] + 180.0) % 360.0 - 180.0)
        for name in POSE_NAMES
    }
    extra = StablePose(stable_values, gaps, int((~both).sum()))
    return PoseDistribution(values, frames_without, available=True, stable=extra)


def pose_panels(pose: PoseDistribution) -> list[Panel]:
    """One histogram per angle, both definitions where the store has the stable one; roll
    modulo 360 (see the module's docstring); then the per-frame disagreement."""
    stable = pose.stable if pose.stable is not None and pose.stable.frames else None

    def shown(name: str, values: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.mod(values, 360.0) if name == "roll" else values

    panels = [
        Panel(
            f"{name} (mod 360; 180 = upright)" if name == "roll" else name,
            "degrees",
            [Series(BASE if stable else "", shown(name, values))]
            + ([Series(STABLE, shown(name, stable.values[name]))] if stable else []),
            bins=72,
        )
        for name, values in pose.values.items()
    ]
    if stable:
        panels.append(
            Panel(
                "the two, per frame (mod 360)",
                f"|{BASE} - {STABLE}|, degrees",
                [Series(name, stable.disagreement[name]) for name in POSE_NAMES],
                bins=60,
                log_y=True,
            )
        )
    return panels


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
        "±180°, and a left-right turn shows in pitch.</p>" + _stable_note(pose.stable)
    )


def _stable_note(stable: StablePose | None) -> str:
    """What the stable definition beside it is, and how often the two disagree."""
    if stable is None:
        return (
            f"<p class='muted'>No {STABLE} (the stable pose, docs/pose.md): the store "
            "predates it; <code>featstore derive</code> adds it from the stored keypoints.</p>"
        )
    missing = (
        f" {stable.frames_without} frames have only {BASE} (written before the upgrade): "
        "<code>featstore derive</code> adds theirs."
        if stable.frames_without
        else ""
    )
    share = stable.disagreeing() / stable.frames if stable.frames else 0.0
    return (
        f"<p class='pose-compare'>Beside it, <b>{STABLE}</b>: the same mean face, camera "
        "and angle names, solved by SQPnP refined on the reprojection error, which moves "
        f"little when the keypoints move by a fraction of a pixel where {BASE}'s EPnP can "
        f"jump by tens of degrees (docs/pose.md). Over the {stable.frames} frames with "
        f"both, they disagree by more than {DISAGREE_DEGREES:g}° in some angle on "
        f"{stable.disagreeing()} ({share:.1%}).{missing}</p>"
    )


def pose_caption(euler_angles: Sequence[float] | None) -> str:
    """`yaw 1.2° pitch -3.4° roll 179.0°` for a thumbnail, or `no pose`."""
    if euler_angles is None:
        return "no pose"
    return " ".join(
        f"{name} {value:.1f}°" for name, value in zip(POSE_NAMES, euler_angles, strict=True)
    )
