"""What a `featstore report` shows, as data: the numbers and the gallery's images.

`featstore.report.build.read_report` fills these from the store's views;
`featstore.report.html` lays them out. Nothing here reads the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from featstore.report.consistency import ConsistencySection
from featstore.report.gallery import Thumbnail
from featstore.report.neighbors import NeighborsSection
from featstore.report.pose import PoseDistribution
from featstore.report.stats import Distribution
from featstore.store import ModelInfo
from featstore.store.query import StoreCounts

FLAGGED_LISTED = 20  # flagged norms, lowest similarities: rows listed
# The angle columns, as DuckDB expressions (arrays are 1-based): docs/formats.md's angle_0..angle_4.
ANGLES = ("avg_angle", *(f"spherical_angles[{i}]" for i in range(1, 6)))

TABLE_ROWS = 5000  # identities listed; the rest are counted (featstore query lists all)


@dataclass(frozen=True)
class IdentityRow:
    """One row of the `identities` view (after `--where`)."""

    identity: str
    face_status: str | None
    frames_total: int
    frames_ok: int
    frames_no_face: int
    frames_unreadable: int
    valid: bool

    @property
    def frames_lost(self) -> int:
        return self.frames_total - self.frames_ok

    @property
    def ok_share(self) -> float:
        return self.frames_ok / self.frames_total if self.frames_total else 0.0


def worst_first(rows: Sequence[IdentityRow]) -> list[IdentityRow]:
    """Not valid first, then the lowest share of ok frames, then the most frames lost."""
    return sorted(rows, key=lambda r: (r.valid, r.ok_share, -r.frames_lost, r.identity))


@dataclass(frozen=True)
class FlaggedNorm:
    identity: str
    role: str
    image_path: str
    norm: float


@dataclass(frozen=True)
class NormCheck:
    """Feature norms of the rows that have features, and the ones that are not 1."""

    norms: dict[str, Distribution]  # role -> norms
    tolerance: float
    non_finite: int
    zero: int
    non_unit: int  # finite, non-zero and further than `tolerance` from 1
    flagged: list[FlaggedNorm]  # the worst `FLAGGED_LISTED`, NaN/inf first

    @property
    def checked(self) -> int:
        return sum(v.count for v in self.norms.values())

    @property
    def flagged_total(self) -> int:
        return self.non_finite + self.zero + self.non_unit


@dataclass(frozen=True)
class ModelComparison:
    """Per identity, the cosine similarity of the frontal features of two models."""

    model: str
    other: str
    dim: int
    other_dim: int
    identities: int  # identities with a frontal row in both models
    cosine: dict[str, float | None] = field(default_factory=dict)  # None: a feature missing

    @property
    def comparable(self) -> bool:
        return self.dim == self.other_dim

    def values(self) -> NDArray[np.float64]:
        return np.array([v for v in self.cosine.values() if v is not None], dtype=np.float64)

    def lowest(self, n: int = FLAGGED_LISTED) -> list[tuple[str, float]]:
        pairs = [(k, v) for k, v in self.cosine.items() if v is not None]
        return sorted(pairs, key=lambda p: (p[1], p[0]))[:n]


@dataclass(frozen=True)
class GalleryImage:
    """One image of the gallery with the row it comes from."""

    identity: str
    role: str
    frame_index: int | None
    status: str
    error: str | None
    thumbnail: Thumbnail
    euler_angles: tuple[float, float, float] | None = None  # the head pose, when solved


@dataclass(frozen=True)
class GalleryIdentity:
    identity: str
    face: GalleryImage | None
    frames: list[GalleryImage]
    frames_total: int  # after --where


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows, computed from the store's views."""

    store: str  # the folder, or the URI without secrets
    model: ModelInfo
    models: list[ModelInfo]
    counts: dict[str, StoreCounts]  # the whole store, per model (what `featstore info` shows)
    where: str | None
    frames_selected: int  # frames of `model` that --where keeps (all without --where)
    identities: list[IdentityRow]  # the TABLE_ROWS worst, worst first
    identities_selected: int  # rows of the `identities` view (after --where)
    valid_selected: int  # of which valid
    frames_per_identity: dict[str, Distribution]  # "all", "ok" -> frames per identity
    angles: dict[str, Distribution]  # ANGLES name -> values over valid_frames
    det_scores: dict[str, Distribution]  # role -> values
    norms: NormCheck
    rejection_reasons: list[tuple[str, str | None, int]]  # status, error, frames
    comparisons: list[ModelComparison]
    gallery: list[GalleryIdentity]
    rejected: list[GalleryImage]
    rejected_total: int
    seed: int
    pose: PoseDistribution | None = None  # the head pose histograms (docs/formats.md)
    consistency: ConsistencySection | None = None  # None: the store has no ArcFace model
    neighbors: NeighborsSection | None = None  # None: the store has no neighbors table

    @property
    def unshown_images(self) -> list[GalleryImage]:
        """Gallery images that could not be shown: missing files, undecodable files.

        An `unreadable` row that still cannot be decoded is what the store says it is, not
        a problem of the report: it gets a placeholder but is not listed.
        """
        images = [i.face for i in self.gallery if i.face is not None]
        images += [f for i in self.gallery for f in i.frames] + self.rejected
        return [
            image
            for image in images
            if image.thumbnail.problem is not None
            and not (
                image.status == "unreadable"
                and image.thumbnail.data_uri is None
                and image.thumbnail.problem.startswith("cannot decode")
            )
        ]
