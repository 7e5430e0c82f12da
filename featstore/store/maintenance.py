"""Keeping a store healthy: compaction, vacuum and history, one model table at a time.

- `compact`: many small files (one per commit of an extraction) become a few large ones
  sorted by identity; rows unchanged. Readers open one footer per file, so this is what
  keeps lookups fast after a long or sharded extraction.
- `vacuum`: deletes data files no version within the retention window needs, including
  the files of commits that a killed run never made. Versions older than the window can
  no longer be read afterwards (time travel ends there), hence a default of 7 days, as
  Delta Lake's own; a shorter one needs `no_writer_running` (`featstore.store.vacuuming`).
- Both also look after the neighbors tables (`neighbors=<model>`, `featstore neighbors`):
  each rerun overwrites one, so its replaced results are files only vacuum deletes.
- `history`: what each version did (operation, featstore command, rows added/removed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from featstore.store.history import Version
from featstore.store.neighbors import NeighborsTable, neighbor_models
from featstore.store.store import Store
from featstore.store.vacuuming import SAFE_RETAIN_HOURS, check_retention

DEFAULT_RETAIN_HOURS = SAFE_RETAIN_HOURS


@dataclass(frozen=True)
class Compaction:
    model: str
    files_before: int
    files_after: int
    version: int
    table: str = "model"  # "model" | "neighbors" (the neighbors table of `model`)


@dataclass(frozen=True)
class Vacuum:
    model: str
    removed: list[str]
    dry_run: bool
    table: str = "model"  # "model" | "neighbors"


def compact(store: str | os.PathLike[str] | Store, *, model: str | None = None) -> list[Compaction]:
    """Compact the tables of `model` (default: every model) of `store`."""
    opened = Store(store)
    done = []
    for name in _models(opened, model):
        snapshot = opened.model(name)
        counts = snapshot.compact("compact")
        done.append(
            Compaction(name, counts["files_before"], counts["files_after"], snapshot.version)
        )
    for table in _neighbors(opened, model):
        counts = table.compact("compact")
        version = int(table.open().version())
        done.append(
            Compaction(
                table.model, counts["files_before"], counts["files_after"], version, "neighbors"
            )
        )
    return done


def vacuum(
    store: str | os.PathLike[str] | Store,
    *,
    model: str | None = None,
    retain_hours: float = DEFAULT_RETAIN_HOURS,
    dry_run: bool = False,
    no_writer_running: bool = False,
) -> list[Vacuum]:
    """Delete files that no version of the last `retain_hours` needs.

    A retention below the default is refused unless `no_writer_running` (a running writer's
    uncommitted files would go); files newer than a table's newest commit always stay.
    """
    check_retention(retain_hours, no_writer_running=no_writer_running)
    opened = Store(store)
    done = [
        Vacuum(
            name,
            opened.model(name).vacuum(
                retain_hours, dry_run=dry_run, no_writer_running=no_writer_running
            ),
            dry_run,
        )
        for name in _models(opened, model)
    ]
    done.extend(
        Vacuum(
            table.model,
            table.vacuum(retain_hours, dry_run=dry_run, no_writer_running=no_writer_running),
            dry_run,
            "neighbors",
        )
        for table in _neighbors(opened, model)
    )
    return done


def history(
    store: str | os.PathLike[str] | Store, *, model: str | None = None, limit: int | None = None
) -> dict[str, list[Version]]:
    """model -> its versions, newest first."""
    opened = Store(store)
    return {name: opened.model(name).history(limit) for name in _models(opened, model)}


def _neighbors(store: Store, model: str | None) -> list[NeighborsTable]:
    """The neighbors tables of `model` (default: all), those that exist."""
    names = _models(store, model) if model is not None else neighbor_models(store.location)
    tables = [NeighborsTable(store.location, name) for name in names]
    return [table for table in tables if table.exists()]


def _models(store: Store, model: str | None) -> list[str]:
    return [store.choose(model)] if model is not None else store.model_names()
