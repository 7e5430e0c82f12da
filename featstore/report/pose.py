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

from featstore.report.plots import Panel, Series
from featstore.report.stats import Distribution
from featstore.report.tally import Bins, Column, Count, Group
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

    values: dict[str, Distribution]  # POSE_NAMES -> degrees (circular stats)
    disagreement: dict[str, Distribution]  # POSE_NAMES -> |face000 - stable| mod 360
    frames_without: int  # frames with face000-pose-v1 but not this (run `featstore derive`)
    disagreeing_frames: int  # frames where some angle differs by more than DISAGREE_DEGREES

    @property
    def frames(self) -> int:
        return self.values["yaw"].count

    def disagreeing(self) -> int:
        """Frames where some angle differs by more than DISAGREE_DEGREES."""
        return self.disagreeing_frames


@dataclass(frozen=True)
class PoseDistribution:
    """The seed's (yaw, pitch, roll) over the frames of `valid_frames` that have a pose."""

    values: dict[str, Distribution]  # POSE_NAMES -> degrees (circular stats)
    frames_without: int  # frames of valid_frames with no pose (degenerate keypoints, ...)
    available: bool  # False: the store was made before the pose columns
    stable: StablePose | None = None  # None: the store predates featstore-pose-sqpnp-v1

    @property
    def frames(self) -> int:
        return self.values["yaw"].count if self.values else 0


def has_pose_columns(con: duckdb.DuckDBPyConnection) -> bool:
    return "euler_angles" in _columns(con)


def _columns(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {row[0] for row in con.execute("DESCRIBE images").fetchall()}


def _mod360(x: str) -> str:
    """numpy's `x % 360` (the divisor's sign) in SQL."""
    return f"(({x}) - 360.0 * floor(({x}) / 360.0))"


POSE_BINS = Bins(72)
DISAGREEMENT_BINS = Bins(60)
_POSED = "euler_angles IS NOT NULL"
# A null list gives null elements: null in all three, or in none.
_BOTH = f"{_POSED} AND {_STABLE_ANGLES}[1] IS NOT NULL"
_GAPS = [
    f"abs({_mod360(f'euler_angles[{i}] - {_STABLE_ANGLES}[{i}] + 180.0')} - 180.0)"
    for i in range(1, 4)
]


@dataclass(frozen=True)
class PoseQuery:
    """What the pose section asks of `valid_frames` (`featstore.report.tally.summarise`
    sums it up with the other frame columns in the same passes)."""

    available: bool  # the store has face000-pose-v1's columns
    stable: bool  # and featstore-pose-sqpnp-v1's

    def groups(self) -> list[Group]:
        """One panel per angle (both definitions on shared edges), then the disagreement."""
        if not self.available:
            return []
        groups = []
        for i, name in enumerate(POSE_NAMES, start=1):
            mine = _angle(f"pose {name}", f"euler_angles[{i}]", _POSED, name)
            theirs = _angle(f"stable {name}", f"{_STABLE_ANGLES}[{i}]", _BOTH, name)
            groups.append(Group(POSE_BINS, (mine, theirs) if self.stable else (mine,)))
        if self.stable:
            gaps = (Column(f"gap {n}", g, _BOTH) for n, g in zip(POSE_NAMES, _GAPS, strict=True))
            groups.append(Group(DISAGREEMENT_BINS, tuple(gaps)))
        return groups

    def counts(self) -> list[Count]:
        if not self.available:
            return []
        counts = [Count("unposed", "euler_angles IS NULL")]
        if self.stable:
            disagree = f"{_BOTH} AND greatest({', '.join(_GAPS)}) > {DISAGREE_DEGREES!r}"
            counts += [
                Count("disagreeing", disagree),
                Count("without stable", f"{_POSED} AND {_STABLE_ANGLES}[1] IS NULL"),
            ]
        return counts

    def result(self, found: dict[str, Distribution], counted: dict[str, int]) -> PoseDistribution:
        if not self.available:
            return PoseDistribution({}, 0, available=False)
        values = {name: found[f"pose {name}"] for name in POSE_NAMES}
        if not self.stable:
            return PoseDistribution(values, counted["unposed"], available=True)
        extra = StablePose(
            {name: found[f"stable {name}"] for name in POSE_NAMES},
            {name: found[f"gap {name}"] for name in POSE_NAMES},
            counted["without stable"],
            counted["disagreeing"],
        )
        return PoseDistribution(values, counted["unposed"], available=True, stable=extra)


def pose_query(con: duckdb.DuckDBPyConnection) -> PoseQuery:
    columns = _columns(con)
    return PoseQuery("euler_angles" in columns, {"euler_angles", _STABLE_ANGLES} <= columns)


def _angle(key: str, expression: str, condition: str, name: str) -> Column:
    """A pose angle, summarised circularly; the roll drawn modulo 360 (upright faces make
    one bar at 180)."""
    shown = _mod360(expression) if name == "roll" else None
    return Column(key, expression, condition, circular=True, shown=shown)


def pose_panels(pose: PoseDistribution) -> list[Panel]:
    """One histogram per angle, both definitions where the store has the stable one; roll
    modulo 360 (see the module's docstring); then the per-frame disagreement."""
    stable = pose.stable if pose.stable is not None and pose.stable.frames else None

    panels = [
        Panel(
            f"{name} (mod 360; 180 = upright)" if name == "roll" else name,
            "degrees",
            [Series(BASE if stable else "", values.histogram)]
            + ([Series(STABLE, stable.values[name].histogram)] if stable else []),
            bins=72,
        )
        for name, values in pose.values.items()
    ]
    if stable:
        panels.append(
            Panel(
                "the two, per frame (mod 360)",
                f"|{BASE} - {STABLE}|, degrees",
                [Series(name, stable.disagreement[name].histogram) for name in POSE_NAMES],
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
        f"{pose.frames} frames of <code>valid_frames</code> with a pose; "
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
