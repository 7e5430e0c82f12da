"""`featstore prune`: remove the identities whose inputs are gone (the person deleted).

The identities to remove are exactly those extract's summary names in its note "in the
store have no inputs any more": the store holds them, the input tree no longer has their
frontal image nor their video folder (`planning.without_inputs`). The tree is scanned as
`extract` scans it, from the same --face-dir / --video-dir, with the same base dir rules:
the stored base dir must be this run's (or `rebase`, after the layout check `extract
--rebase` makes), so folders that are not the store's own are never taken for a dataset
whose people were all deleted.

Each model's table loses the identities in one commit (`ModelSnapshot.delete_identities`),
so the versions before it still hold them (`--version`). A neighbors table of the store
(`featstore.store.neighbors`) loses its rows naming them in one commit too: its views and
the split would otherwise still join identities through someone who is gone; the next
`featstore neighbors` computes it again.

Refused, removing nothing: input folders that do not exist or in which no identity is
found (an unmounted disk or a wrong path looks like that, and would remove everyone).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from featstore.errors import InputError, plural
from featstore.extraction.inputs import InputTree, scan_inputs
from featstore.extraction.planning import check_same_layout, without_inputs
from featstore.store import Store
from featstore.store.neighbors import NeighborsTable, neighbor_models
from featstore.store.snapshot import ModelSnapshot
from featstore.store.table import ModelTable

COMMAND = "prune"


@dataclass(frozen=True)
class PrunedModel:
    """One table's identities without inputs, and what removing them did (or would do)."""

    model: str
    identities: tuple[str, ...]
    rows: int  # rows of those identities (removed, or that would be)
    version: int | None  # the commit that removed them; None for a dry run or nothing to do


@dataclass(frozen=True)
class PruneResult:
    """What `prune` found and did."""

    store: str
    inputs: int  # identities found in the input folders
    applied: bool  # False: a dry run, nothing written
    models: list[PrunedModel]
    neighbors: list[PrunedModel]  # the neighbors tables' rows naming removed identities

    @property
    def identities(self) -> tuple[str, ...]:
        """Every identity removed (or that would be) from some table, sorted."""
        return tuple(sorted({i for m in self.models for i in m.identities}))


def prune(
    face_dir: str | os.PathLike[str],
    video_dir: str | os.PathLike[str],
    store: str | os.PathLike[str],
    *,
    base_dir: str | os.PathLike[str] | None = None,
    rebase: bool = False,
    apply: bool = False,
) -> PruneResult:
    """Remove from every table of `store` the identities whose inputs are gone.

    Args:
        face_dir, video_dir: the input folders, as given to `extract`.
        store: the store (it must exist).
        base_dir: as for `extract` (default: the folders' common parent); it must be the
            stored base dir, or `rebase` must say the images moved.
        rebase: the images moved: accept another base dir after checking that an
            identity's stored frontal path is its path under it (the new base dir is not
            recorded: `extract --rebase` does that).
        apply: remove them (one commit per table); by default only say what would go.

    Raises:
        InputError: missing or empty input folders, a base dir that is not the store's.
        StoreError: no store there, or it cannot be written.
    """
    opened = Store(store)
    face_path, video_path = Path(face_dir).absolute(), Path(video_dir).absolute()
    _require_inputs(face_path, video_path)
    tree = scan_inputs(face_path, video_path)
    base = (
        Path(base_dir).absolute() if base_dir else Path(os.path.commonpath([face_path, video_path]))
    )
    snapshots = [opened.model(name) for name in opened.require_models()]
    for snapshot in snapshots:
        _check_base_dir(opened.table(snapshot.name), snapshot, tree, base, rebase)
    done = {s.name: s.summary(["identity"]).identities for s in snapshots}
    gone = set(without_inputs(tree, done))
    if gone and not tree.identities:
        raise InputError(
            f"no identity found in --face-dir {face_path} or --video-dir {video_path}, so every "
            f"one of the store's {plural(len(gone), 'identity')} would be removed. An unmounted "
            "disk or a wrong path looks like this; nothing was removed.\nHint: check that the "
            "folders are the ones the store was extracted from and that their disk is mounted."
        )
    models = [_prune_model(s, gone, apply) for s in snapshots]
    removed = {i for m in models for i in m.identities}
    neighbors = [
        _prune_neighbors(NeighborsTable(opened.location, name), removed, apply)
        for name in neighbor_models(opened.location)
    ]
    return PruneResult(
        store=str(opened),
        inputs=len(tree.identities),
        applied=apply,
        models=models,
        neighbors=[n for n in neighbors if n.rows],
    )


def _require_inputs(face_dir: Path, video_dir: Path) -> None:
    """Refuse folders that do not exist: a disk not mounted, not deleted people."""
    for flag, folder in (("--face-dir", face_dir), ("--video-dir", video_dir)):
        if not folder.exists():
            raise InputError(
                f"{flag} {folder} does not exist. That looks like an unmounted disk or a "
                "moved dataset, not deleted people: prune removes nothing.\nHint: mount the "
                "disk (or give the folders' new place, with --rebase if the base dir "
                "changed), then run prune again."
            )
        if not folder.is_dir():
            raise InputError(f"{flag} {folder} is not a folder.")


def _check_base_dir(
    table: ModelTable, snapshot: ModelSnapshot, tree: InputTree, base: Path, rebase: bool
) -> None:
    """The base dir must be the stored one, or a rebase whose layout matches (as extract)."""
    stored = snapshot.provenance.get("base_dir")
    if stored == base.as_posix():
        return
    if not rebase:
        raise InputError(
            f"{table} was extracted with base dir {stored}, but these folders give "
            f"{base.as_posix()}: prune only compares the store with the folders it was "
            "extracted from; nothing was removed.\nHint: give those folders (and --base-dir "
            "as extract had it); if the images moved there, add --rebase (CLI) / "
            "rebase=True, which checks the layout first."
        )
    check_same_layout(tree, table, base)


def _prune_model(snapshot: ModelSnapshot, gone: set[str], apply: bool) -> PrunedModel:
    stored = snapshot.identity_rows(sorted(gone))
    identities = tuple(sorted(stored))
    rows = sum(stored.values())
    if not apply or not identities:
        return PrunedModel(snapshot.name, identities, rows, None)
    snapshot.delete_identities(identities, COMMAND)
    return PrunedModel(snapshot.name, identities, rows, snapshot.version)


def _prune_neighbors(table: NeighborsTable, removed: set[str], apply: bool) -> PrunedModel:
    stored = table.read()
    if stored is None or not removed or not stored.files:
        return PrunedModel(table.model, (), 0, None)
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    names = list(removed)
    where = pc.field("identity").isin(names) | pc.field("neighbor").isin(names)
    rows = pads.dataset(stored.files, filesystem=table.location.fs, format="parquet").to_table(
        columns=["identity", "neighbor"], filter=where
    )
    named = tuple(sorted(set(rows.column("identity").to_pylist()) & removed
                         | set(rows.column("neighbor").to_pylist()) & removed))  # fmt: skip
    if not apply or not rows.num_rows:
        return PrunedModel(table.model, named, rows.num_rows, None)
    table.delete_identities(names, COMMAND)
    return PrunedModel(table.model, named, rows.num_rows, int(table.open().version()))
