"""`export-npy`: a model of the store out as face000's npy training directory (docs/formats.md).

    <out>/front_feature.npy  front_keypoints.npy  front_metadata.json  front_failed_images.json
          video_feature.npy  video_keypoints.npy  video_metadata.json  video_failed_images.json

The files equal a fresh run of the seed's `extract_and_align_3d_data.py` over the same tree
byte for byte, except the video `landmarks_3d_original` (the seed writes `[]`; here the
real values, which its trainers then use as intended) and the text of a `read_error`
(featstore's own reason). How:

- Rows come from `store_scan.NpyScan` in the seed's order, each kept or failed by kind;
  the pose is solved again in float64 from the stored float32 keypoints (`math.atan2`).
- The `.npy` files are written a block of rows at a time under the header `np.save`
  would write for the final shape (`npy_blocks.NpyWriter`); the row counts come first
  from one SQL count each. The JSON lists go to spool files joined at the end
  (`json_text.ObjectWriter`): memory holds a block of rows, the front rows' original
  landmarks (`standard_info` needs them all: 120 bytes an identity) and the failures.
- Everything is written into `.<out>.tmp-<pid>` beside `out`, fsynced, then renamed to
  `out`; an earlier export there is first moved aside and removed after. A killed export
  leaves the previous directory (or, between the two renames, none) and its temporary
  folder, which the next export removes.
- Refused: `out` inside a store, or an existing folder that holds anything but these
  eight files (it is not an earlier export: replacing it would delete it).

Decisions where docs/formats.md is silent: `--model` defaults to the store's ArcFace model (the
one the seed's trainers use); `--where` filters frames as in `export-json`; paths are
written as stored (relative to the extraction's base dir) unless `--base-dir` re-bases
them; `processed_persons` counts the persons with at least one frame row (an empty video
folder leaves no row in the store); a directory with no front or no video row is refused
(the seed crashes on it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from featstore.errors import InputError, StoreError
from featstore.npy_dir.json_text import ObjectWriter, value_text
from featstore.npy_dir.layout import (
    FAILURE_KINDS,
    FEATURE_DTYPE,
    FILE_NAMES,
    FRONT,
    KEYPOINTS_DTYPE,
    ROW_LISTS,
    VIDEO,
    SideLayout,
    failure_entry,
    keypoints,
    standard_info,
)
from featstore.npy_dir.npy_blocks import NpyWriter
from featstore.npy_dir.store_scan import Block, NpyScan, Rebase
from featstore.store.consistency import is_arcface_model
from featstore.store.paths import enclosing_store
from featstore.store.store import Store, read_failure
from featstore.store.where import check_where_with, columns_of, duckdb_error
from featstore.trainer_json.json_writer import _alive  # the liveness check export-json uses

if TYPE_CHECKING:
    from featstore.store.snapshot import ModelSnapshot


@dataclass(frozen=True)
class NpyExportSummary:
    """What `export_npy` wrote."""

    out: Path
    model: str
    feature_dim: int
    fronts: int
    frames: int
    failed_fronts: int
    failed_frames: int

    def format(self) -> str:
        return (
            f"wrote {self.fronts} front rows and {self.frames} video rows of {self.model} "
            f"({self.feature_dim} dims; failed: {self.failed_fronts} front, "
            f"{self.failed_frames} video) to {self.out}"
        )


def export_npy(
    store: str | os.PathLike[str] | Store,
    *,
    out: str | os.PathLike[str],
    model: str | None = None,
    where: str | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    version: int | None = None,
) -> NpyExportSummary:
    """Write face000's npy training directory for one model of `store` to `out`.

    Args:
        store: the store folder, or an open `Store`.
        out: the directory to write; replaced if it holds an earlier export.
        model: default: the store's ArcFace model (any model works; `feature_dim` follows).
        where: an SQL predicate over the `frames` view; frames it rejects are left out.
        base_dir: write paths relative to it (default: as stored, i.e. relative to the
            extraction's base dir, which is the seed's when it ran from the tree's root).
        version: export this version of the model's table (default: the latest).

    Raises:
        StoreError: no such model, no rows, rows without image size or pose columns.
        InputError: a bad `out` or `where`.
    """
    opened = store if isinstance(store, Store) else Store(store)
    info = opened.model(_default_model(opened, model), version)
    out_dir = check_out_dir(Path(out))
    export_base = Path(os.path.abspath(base_dir)) if base_dir is not None else None
    rebase = Rebase(info.provenance.get("base_dir"), export_base)
    _remove_dead_temporaries(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    with info.connect() as con:
        scan = NpyScan(con, check_where_with(con, where, columns_of(con, "frames")), rebase)
        counts = _check_rows(scan, info)
        tmp.mkdir()
        try:
            front = _SideWriter(FRONT, tmp, info.dim, counts[0])
            failed_fronts = front.write(scan.fronts(), scan)
            video = _SideWriter(VIDEO, tmp, info.dim, counts[1], scale=front.scale)
            video.provenance, video.unfiltered = dict(info.provenance), not where
            failed_frames = video.write(scan.frames(), scan)
            _fsync_folder(tmp)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, (duckdb_error(), OSError)) and not isinstance(exc, InputError):
                raise read_failure(exc, opened) from exc
            raise
    _swap_in(tmp, out_dir)
    return NpyExportSummary(out_dir, info.name, info.dim, *counts, failed_fronts, failed_frames)


def _default_model(store: Store, model: str | None) -> str:
    if model is not None:
        return model
    names = store.model_names()
    arcface = [name for name in names if is_arcface_model(name)]
    if len(arcface) == 1:
        return arcface[0]
    raise StoreError(
        f"store {store.location} holds {len(arcface)} ArcFace models (models: "
        f"{', '.join(names) or 'none'}); the seed's trainers read ArcFace features.\n"
        "Hint: extract with --model arcface, or choose a model with --model."
    )


def _check_rows(scan: NpyScan, info: ModelSnapshot) -> tuple[int, int]:
    if scan.missing_sizes():
        raise StoreError(
            f"model {info.name} has ok rows without an image size (rows imported from a "
            "trainer JSON): the directory needs each image's size and the pose solved from it.\n"
            "Hint: extract the model from the images (featstore extract --model ...)."
        )
    counts = scan.kept_count("face"), scan.kept_count("frame")
    for side, count in zip(("front", "video"), counts, strict=True):
        if not count:
            raise StoreError(
                f"model {info.name} has no {side} row with features and a head pose (after "
                "--where); the seed's trainers cannot use a directory without them.\n"
                "Hint: check the extraction summary (featstore info), or loosen --where."
            )
    return counts


class _SideWriter:
    """One side's four files, from its blocks of rows."""

    def __init__(
        self, layout: SideLayout, folder: Path, dim: int, rows: int, scale: Any = None
    ) -> None:
        self.layout, self.folder, self.dim, self.rows = layout, folder, dim, rows
        self.scale = scale  # the front set's standard_scale (None for the front side)
        self.provenance: dict[str, Any] = {}
        self.unfiltered = True

    def write(self, blocks: Any, scan: NpyScan) -> int:
        layout = self.layout
        features = NpyWriter(self.folder / layout.feature, FEATURE_DTYPE, (self.rows, self.dim))
        keys = NpyWriter(self.folder / layout.keypoints, KEYPOINTS_DTYPE, (self.rows, 5, 3))
        meta = ObjectWriter(self.folder / layout.metadata, layout.metadata_keys)
        try:
            return self._write(blocks, scan, features, keys, meta)
        except BaseException:
            for writer in (features, keys, meta):
                writer.discard()  # the folder is removed by the caller
            raise

    def _write(
        self,
        blocks: Any,
        scan: NpyScan,
        features: NpyWriter,
        keys: NpyWriter,
        meta: ObjectWriter,
    ) -> int:
        layout = self.layout
        meta.add("num_samples", self.rows)
        meta.add("feature_dim", self.dim)
        spools = {key: meta.spool(key) for key in ("metadata", *ROW_LISTS)}
        failures: dict[str, list[dict[str, str]]] = {kind: [] for kind in FAILURE_KINDS}
        front_originals, total = [], 0
        for block in blocks:
            total += block.rows
            for kind, path, person, error in block.failures:
                failures[kind].append(failure_entry(kind, path, person, error))
            arrays = block.arrays(self.dim)
            features.append(arrays["features"])
            spools["metadata"].extend(value_text(row, 2) for row in _metadata_rows(block))
            for key, name in (("poses", "poses"), ("boxes", "boxes"),
                              ("landmarks_2d", "landmarks_2d"),
                              ("landmarks_3d_original", "originals")):  # fmt: skip
                spools[key].extend(value_text(row, 2) for row in arrays[name].tolist())
            if self.scale is None:
                front_originals.append(arrays["originals"])
            else:
                keys.append(np.array([keypoints(lm, self.scale) for lm in block.originals]))
        if self.scale is None:
            originals = np.concatenate(front_originals)
            info = standard_info(originals)
            meta.add("standard_info", info.as_json)
            self.scale = info.scale
            keys.append(np.array([keypoints(lm, info.scale) for lm in originals]))
        for writer in (features, keys):
            writer.close()
        meta.close()
        failed = total - self.rows
        summary: dict[str, Any] = {"total_images": total}
        if layout.side == "video":
            summary |= {"skipped_persons": 0, "processed_persons": self._persons(scan)}
        summary |= {"successful": self.rows, "failed": failed, "failed_details": failures}
        _write_text(self.folder / layout.failed, value_text(summary))
        return failed

    def _persons(self, scan: NpyScan) -> int:
        # An imported directory's own count (it holds empty video folders, which leave no row).
        recorded = self.provenance.get("processed_persons")
        if isinstance(recorded, int) and self.provenance.get("source") == "npy" and self.unfiltered:
            return recorded
        return scan.person_count()


def _metadata_rows(block: Block) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"person_name": person, "image_path": path, "image_size": list(size)}
        for person, path, size in zip(block.persons, block.paths, block.sizes, strict=True)
    ]
    for row, stem in zip(rows, block.frame_index, strict=False):
        row["frame_index"] = stem
    return rows


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def check_out_dir(out: Path) -> Path:
    """The absolute `out`, refused inside a store or over a folder that is no export."""
    out = Path(os.path.abspath(out))
    store = enclosing_store(out / "x")
    if store is not None:
        raise InputError(
            f"--out {out} is inside the store {store}: writing there could replace the "
            "store's own files.\nHint: write the directory outside the store's folder."
        )
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise InputError(
                f"--out {out} exists and is not a folder.\nHint: choose another --out."
            )
        others = sorted(set(os.listdir(out)) - set(FILE_NAMES))
        if others:
            shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            raise InputError(
                f"--out {out} holds other files than an npy training directory ({shown}); "
                "export-npy replaces only an earlier export (the eight files).\n"
                "Hint: choose a new or empty folder for --out."
            )
    elif not out.parent.is_dir():
        raise InputError(
            f"--out {out}: the folder {out.parent} does not exist.\nHint: create it first."
        )
    return out


def _swap_in(tmp: Path, out: Path) -> None:
    """`tmp` becomes `out`; an earlier export at `out` is moved aside, then removed."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    _fsync_folder(out.parent)


def _fsync_folder(folder: Path) -> None:
    for name in os.listdir(folder):
        path = folder / name
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_dead_temporaries(out: Path) -> None:
    """Folders that killed exports to `out` left beside it (a live pid's is kept)."""
    for prefix in (f".{out.name}.tmp-", f".{out.name}.old-"):
        with contextlib.suppress(OSError):
            for name in os.listdir(out.parent):
                pid = name[len(prefix) :]
                if name.startswith(prefix) and pid.isdigit() and not _alive(int(pid)):
                    shutil.rmtree(out.parent / name, ignore_errors=True)
