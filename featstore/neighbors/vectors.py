"""A model's embeddings read from the store, checked, and turned into identity vectors.

Every `ok` row with features becomes a unit vector; a vector with a NaN or an infinity,
or of (near) zero norm, cannot have a cosine and is left out and counted, never a crash.
Per identity:

    face   the frontal image's embedding
    mean   the normalised mean of its `ok` frames' embeddings (the frames' unit vectors
           summed; the identity is left out of this search when they cancel out)

Rows are read ordered by (identity, role, frame_index), so an identity's images are one
contiguous range: `starts[i]:starts[i + 1]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from featstore.errors import StoreError
from featstore.store.store import Store, read_failure

_MIN_NORM = 1e-6


@dataclass
class Embeddings:
    """The usable images of one model version, grouped by identity."""

    model: str
    dim: int
    identities: list[str]  # sorted
    image_identity: NDArray[np.int64]  # per image, index into identities
    image_path: list[str]
    is_face: NDArray[np.bool_]
    vectors: NDArray[np.float32]  # [images, dim], unit rows
    excluded: dict[str, int] = field(default_factory=dict)  # why -> images left out

    @property
    def starts(self) -> NDArray[np.int64]:
        """Where each identity's images start (and, last, where they end)."""
        bounds = np.searchsorted(self.image_identity, np.arange(len(self.identities) + 1))
        return bounds.astype(np.int64)


@dataclass
class IdentityVectors:
    """One vector per identity that has one (`index` into `Embeddings.identities`)."""

    kind: str  # 'face' | 'mean'
    index: NDArray[np.int64]
    vectors: NDArray[np.float32]
    excluded: int  # identities whose vector was unusable (frames cancelling out)


def load_embeddings(store: Store, model: str, version: int) -> Embeddings:
    """The `ok` rows of `model` at `version` with their features, as unit vectors."""
    import duckdb

    with store.connect(model=model, version=version) as con:
        try:
            table = con.sql(
                """SELECT identity, role = 'face' AS is_face, image_path,
                          features::FLOAT[] AS features
                   FROM images WHERE status = 'ok' AND features IS NOT NULL
                   ORDER BY identity, role, frame_index, image_path"""
            ).to_arrow_table()
            missing = con.execute(
                "SELECT count(*) FROM images WHERE status = 'ok' AND features IS NULL"
            ).fetchone()
        except duckdb.Error as exc:
            raise read_failure(exc, store) from exc
    names = table.column("identity").to_pylist()
    column = table.column("features").combine_chunks()
    lengths = np.asarray(column.value_lengths().fill_null(0))
    dims = set(lengths.tolist())
    if len(dims) > 1:
        raise StoreError(
            f"model {model}: feature vectors of several lengths ({sorted(dims)}); the "
            "table is damaged.\nHint: extract the model again into a new --store."
        )
    dim = dims.pop() if dims else 0
    flat = np.asarray(column.flatten(), dtype=np.float32)
    vectors = flat.reshape(len(names), dim) if dim else np.zeros((len(names), 0), np.float32)
    excluded = {"no features": int(missing[0]) if missing else 0}
    keep, vectors, excluded_bad = unit_rows(vectors)
    excluded.update(excluded_bad)
    keep_idx = np.flatnonzero(keep)
    kept_names = [names[i] for i in keep_idx]
    identities = sorted(set(names))
    position = {name: i for i, name in enumerate(identities)}
    paths = table.column("image_path").to_pylist()
    return Embeddings(
        model=model,
        dim=dim,
        identities=identities,
        image_identity=np.asarray([position[n] for n in kept_names], dtype=np.int64),
        image_path=[paths[i] for i in keep_idx],
        is_face=np.asarray(table.column("is_face").to_numpy(zero_copy_only=False))[keep_idx],
        vectors=vectors,
        excluded={k: v for k, v in excluded.items() if v},
    )


def unit_rows(vectors: NDArray[np.float32]) -> tuple[NDArray[np.bool_], NDArray, dict[str, int]]:
    """(usable rows, those rows normalised, counts of the rows left out by reason)."""
    finite: NDArray[np.bool_] = np.asarray(np.isfinite(vectors).all(axis=1))
    norms = np.linalg.norm(np.where(finite[:, None], vectors, 0), axis=1)
    nonzero = norms > _MIN_NORM
    keep = finite & nonzero
    unit = (vectors[keep] / norms[keep, None]).astype(np.float32)
    reasons = {
        "NaN or infinite values": int((~finite).sum()),
        "zero vector": int((finite & ~nonzero).sum()),
    }
    return keep, np.ascontiguousarray(unit), reasons


def identity_vectors(emb: Embeddings) -> list[IdentityVectors]:
    """The frontal and the mean-of-frames vector of each identity that has them."""
    faces = np.flatnonzero(emb.is_face)
    # First frontal row per identity (a second one, if an import made it, is ignored).
    face_ids, first = np.unique(emb.image_identity[faces], return_index=True)
    face = IdentityVectors("face", face_ids, emb.vectors[faces[first]], 0)
    frames = np.flatnonzero(~emb.is_face)
    if not len(frames):
        return [face, IdentityVectors("mean", np.zeros(0, np.int64), emb.vectors[:0], 0)]
    # Rows are sorted by identity: each identity's frames are one run, summed at once.
    owners, starts = np.unique(emb.image_identity[frames], return_index=True)
    sums = np.add.reduceat(emb.vectors[frames], starts, axis=0, dtype=np.float64)
    keep, unit, reasons = unit_rows(sums.astype(np.float32))
    return [face, IdentityVectors("mean", owners[keep], unit, reasons["zero vector"])]
