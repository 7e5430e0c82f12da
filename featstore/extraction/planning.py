"""What a run has to do: the store's state (each model's table) against the inputs.

`open_store` opens (or, but for a dry run, creates) the store; `done` reads which identities
a table holds with which input fingerprint; `plan` lists the identities some model lacks or
holds from other inputs; `compact_if_fragmented` tidies a table a run left in pieces.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featstore.errors import InputError, StoreError
from featstore.extraction.extractor import IdentityJob
from featstore.extraction.fingerprint import SEPARATOR, InputStat, content_digest
from featstore.extraction.inputs import IdentityInputs, InputTree
from featstore.store import Store
from featstore.store.format import FINGERPRINT_COLUMN, store_schema
from featstore.store.location import resolve_store
from featstore.store.store import holds_entries
from featstore.store.table import ModelTable

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

# A run that leaves this many files under COMPACT_SMALL_BYTES compacts its table at the
# end: a lookup opens one file's footer per file, so thousands of small files would make
# every read slow, while one compaction costs about one read and write of the table.
COMPACT_AT_FILES = 64
COMPACT_SMALL_BYTES = 32 << 20


def open_store(store: str | os.PathLike[str], dry_run: bool) -> Store | None:
    """The store, created when absent; a dry run creates nothing (None: no store yet)."""
    if not dry_run:
        return Store(store, create=True)
    try:
        return Store(store)
    except StoreError:
        if holds_entries(resolve_store(store)):  # not a store: the real run refuses it too
            raise
        return None


def check_same_layout(tree: InputTree, table: ModelTable, base: Path) -> None:
    """Before a rebase: an identity's stored frontal path must be its path under `base`."""
    from featstore.store.paths import relative_path

    stored = table.open().frontal_paths()
    for inputs in tree.identities:
        if inputs.face is None or inputs.identity not in stored:
            continue
        expected = relative_path(inputs.face, base)
        if stored[inputs.identity] != expected:
            raise InputError(
                f"rebase: {inputs.identity!r}'s frontal image is stored as "
                f"{stored[inputs.identity]!r} but is {expected!r} under the new base dir "
                f"{base}: the folders below the base dir changed, so the stored paths would be "
                "wrong.\nHint: give base_dir= (CLI: --base-dir) the folder that now holds what "
                "the old base dir held, or extract again with overwrite (CLI: --overwrite)."
            )
        return  # one identity shows the layout; every path was made the same way


def would_refuse(
    table: ModelTable | None,
    provenance: Mapping[str, Any],
    overwrite: bool,
    *,
    rebase: bool = False,
) -> None:
    """What `ModelTable.claim` would refuse, found without writing anything (with `rebase`:
    after the new base dir is recorded, as the run does first)."""
    if table is not None:
        table.would_refuse(provenance, overwrite, rebase=rebase)


def without_inputs(tree: InputTree, done: Mapping[str, pa.Table]) -> tuple[str, ...]:
    """Identities the store holds (`done`'s tables' `identity`) but the inputs no longer
    have (deleted or renamed)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    inputs = pa.array([i.identity for i in tree.identities], pa.string())
    gone: set[str] = set()
    for held in done.values():
        names = held.column("identity")
        gone.update(names.filter(pc.invert(pc.is_in(names, value_set=inputs))).to_pylist())
    return tuple(sorted(gone))


def row_schema(dim: int) -> pa.Schema:
    """The columns extraction writes: the store's, and each identity's input fingerprint."""
    import pyarrow as pa

    return store_schema(dim).append(pa.field(FINGERPRINT_COLUMN, pa.string()))


def done(table: ModelTable | None, overwrite: bool) -> pa.Table:
    """identity, input fingerprint of what the model's table holds, in Arrow (a million
    identities are compared by `plan` without a Python object each); nothing counts as
    done under --overwrite (null fingerprints: every identity is redone, replacing its rows)."""
    import pyarrow as pa

    if table is None or not table.exists():  # a dry run before the first extract
        return pa.table(
            {"identity": pa.array([], pa.string()), FINGERPRINT_COLUMN: pa.array([], pa.string())}
        )
    held = table.open().fingerprint_table()
    if overwrite:
        held = held.set_column(1, FINGERPRINT_COLUMN, pa.nulls(len(held), pa.string()))
    return held


def plan(tree: InputTree, models: Sequence[str], done: Mapping[str, pa.Table]) -> list[IdentityJob]:
    """The identities some model lacks or holds from other inputs, and which models.

    A model holds an identity's current rows when their fingerprint matches its files
    (`InputStat.matches`): the same stat, or, for a copy of the files (`cp -a`), the same
    names, sizes, mtimes and content; the content is read only in that second case. The
    tree's identities are looked up in each model's table by Arrow (`_stale`).
    """
    import numpy as np

    listed = [i for i in tree.identities if i.face is not None or i.frames]
    # (an empty video folder without a frontal image: nothing to store)
    stats = [inputs.stat() for inputs in listed]
    contents: dict[int, str | None] = {}
    stale = {m: _stale(listed, stats, done[m], contents) for m in models}
    jobs = []
    redo = np.logical_or.reduce([stale[m] for m in models]) if models else np.zeros(0, bool)
    for k in np.flatnonzero(redo).tolist():
        needed = tuple(m for m in models if stale[m][k])
        jobs.append(IdentityJob(listed[k], stats[k], needed))
    return jobs


def _stale(
    listed: Sequence[IdentityInputs],
    stats: Sequence[InputStat],
    held: pa.Table,
    contents: dict[int, str | None],
) -> Any:
    """Per listed identity, whether `held` lacks its current rows (a numpy bool array):
    `InputStat.matches` for every identity at once, the content read only for the few
    whose fingerprint matches by the copy part alone (`contents` keeps it for the next
    model)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    names = pa.array([inputs.identity for inputs in listed], pa.string())
    at = pc.index_in(names, value_set=held.column("identity").combine_chunks())
    stored = pc.take(held.column(FINGERPRINT_COLUMN).combine_chunks(), at)
    parts = pc.split_pattern(stored, SEPARATOR)
    lengths = pc.list_value_length(parts)
    same = pc.equal(pc.list_element(parts, 0), pa.array([s.stat for s in stats], pa.string()))
    fresh = pc.fill_null(same, False).to_numpy(zero_copy_only=False)
    three = pc.fill_null(pc.equal(lengths, 3), False).to_numpy(zero_copy_only=False)
    candidates = np.flatnonzero(three & ~fresh)
    for k in candidates.tolist():
        _, copy, content = stored[k].as_py().split(SEPARATOR)
        if copy != stats[k].copy:
            continue
        if k not in contents:
            contents[k] = content_digest(listed[k].paths)
        fresh[k] = contents[k] == content
    return ~fresh


def compact_if_fragmented(table: ModelTable) -> bool:
    """Compact a table this run left in many small files (see COMPACT_AT_FILES)."""
    snapshot = table.open()
    small = sum(1 for size in snapshot.file_sizes() if size < COMPACT_SMALL_BYTES)
    if small < COMPACT_AT_FILES:
        return False
    try:
        snapshot.compact("extract (compaction)")
    except StoreError as exc:  # e.g. another shard committed meanwhile: the rows are safe
        log.warning("%s not compacted (run `featstore compact` later): %s", table, exc)
        return False
    return True
