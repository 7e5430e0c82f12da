"""`import-json`: a trainer JSON in the new format (docs/formats.md) into the store, streamed.

The seed's 3D file (`valid_images_3d.json`, docs/formats.md) imports too: its identities carry a
pose (`face_euler_angles`, frames' `euler_angles`, ...), which fills the pose columns; its
`landmarks_3d` become `pose_landmarks_3d`; the spherical angles and pseudo-3D landmarks it
lacks are null (`featstore.trainer_json.identity_rows`). The provenance records
`"json_format": "3d"`. One file holds one format.

Users of the seed's script already hold `valid_images.json` files; importing one gives a
store without extracting again. What becomes of the file:

- Each identity becomes a `face` row and one `frame` row per `video_data` entry,
  all `ok`, `frame_index` 0..n-1 in file order. Values are the file's (landmarks_3d and
  angles are not recomputed). The JSON has no detector score, image size or file size:
  `det_score`, `width`, `height` and `file_size` are null.
- `total_video_images` (frames of any status, which the JSON does not list) is kept in
  an extra column of the frontal row, `total_video_images`, so the store's rows stay
  honest: the `identities` view counts the frames that exist as rows (all `ok`), and
  `export-json` writes the recorded total back.
- Paths: relative ones resolve against `base_dir` (default: the JSON file's folder, as
  the trainer resolves them), absolute ones are kept; `\\` separators are accepted.
  `base_dir` is recorded as the model's provenance `base_dir` and stored paths are
  relative to it, so `export-json` re-bases them like extracted ones.
- Provenance: `{"source": "json", "json_file", "json_sha256", "model", "feature_dim",
  "base_dir", "featstore_version"}`. It never mixes with rows of another provenance
  (an extraction, another file): that is refused unless `overwrite`. Importing the
  same file again replaces the model's rows with the same rows.
- Leniency, for files written by other tools: `feature_dim` defaults to the length of
  `face_features`, `dinov2_model` to `--model`, `total_video_images` and
  `valid_video_images` (absent from the seed's note) to the frames listed; fields the
  format does not have are ignored; a UTF-8 BOM is skipped. Strict where the trainer
  would go wrong: one model and one dim per file, every shape, finite float32 numbers,
  each identity once, `valid_video_images` equal to the frames listed.

The store is not touched until the whole file has parsed and checked: identities are
checked one at a time into a scratch Arrow file (the system's temp folder, memory bounded
by one identity), then streamed into the model's Delta table, where one commit makes them
its rows (replacing what the model held). A failure or a kill before that commit leaves
only data files no version refers to, which readers never see and `featstore vacuum`
removes.

Numbers become the nearest float32 to the decimal written, rounded once. The parser
gives float64s, and rounding those to float32 rounds twice, which is wrong only when the
float64 lands exactly halfway between two float32 values: among the shortest float32
decimals that orjson writes (and export-json writes), `7.038531e-26` is the one such
case (checked over all 2^32 values). When a number lands halfway, that identity is parsed
again with numbers as Decimal and rounded exactly.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

import featstore
from featstore.errors import InputError, StoreError, plural
from featstore.store import Store
from featstore.store.bulk_write import replace_rows
from featstore.store.format import STORE_MANIFEST
from featstore.store.location import resolve_store
from featstore.trainer_json.identity_rows import HINT, IdentityReader
from featstore.trainer_json.json_stream import bom_length
from featstore.trainer_json.store_rows import RowTarget, rows_schema, store_rows


@dataclass(frozen=True)
class ImportSummary:
    """What `import_json` added to the store."""

    path: Path  # the JSON file
    store: Path | str  # the folder, or the store's URI without secrets
    model: str
    feature_dim: int
    identities: int
    frames: int
    base_dir: Path  # relative paths of the file were resolved against it
    replaced: bool  # the model held rows before (an earlier import, or with overwrite)

    def format(self) -> str:
        """One line for people."""
        verb = "replaced model" if self.replaced else "imported into model"
        return (
            f"{verb} {self.model} ({self.feature_dim} dims) of {self.store}: "
            f"{plural(self.identities, 'identity')}, {plural(self.frames, 'frame')} "
            f"from {self.path}; "
            f"paths resolved against {self.base_dir}"
        )


def import_json(
    path: str | os.PathLike[str],
    *,
    store: str | os.PathLike[str],
    model: str | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> ImportSummary:
    """Load a new-format trainer JSON into `store` as the rows of one model.

    Args:
        path: the JSON file (e.g. the seed's `valid_images.json`).
        store: the store folder (created if needed).
        model: the model the rows belong to; default: the file's `dinov2_model`.
        base_dir: relative paths in the file resolve against it; default: its folder.
        overwrite: replace the model's rows when they were made differently (extracted,
            or imported from another file or base dir).

    Returns:
        An `ImportSummary`.

    Raises:
        InputError: the file is not a usable new-format JSON (the message names the
            identity and field, what was expected and what was found).
        StoreError: the store cannot be written.
        ProvenanceMismatchError: the model already holds rows made differently.
    """
    json_path = Path(path)
    opening = _sniff(json_path)
    base = Path(os.path.abspath(base_dir if base_dir is not None else json_path.parent))
    _refuse_a_store_it_cannot_write(store)  # before a long parse, not after
    with tempfile.TemporaryDirectory(prefix="featstore-import-") as scratch:
        spill = Path(scratch) / "rows.arrow"
        loader = _Loader(json_path, base, model)
        loader.spill(opening, spill)
        # The whole file has parsed and checked: only now is the store touched.
        opened = Store(store, create=True)
        replaced = _commit(opened, loader, spill, overwrite=overwrite)
    assert loader.model is not None and loader.dim is not None
    return ImportSummary(
        path=json_path,
        store=opened.location.local or opened.location.display,  # a URI stays a URI
        model=loader.model,
        feature_dim=loader.dim,
        identities=loader.identities,
        frames=loader.frames,
        base_dir=base,
        replaced=replaced,
    )


def _refuse_a_store_it_cannot_write(store: str | os.PathLike[str]) -> None:
    """An existing store of another format (or not a store) is refused up front; nothing
    is created here (a new store is made only once the file has parsed)."""
    location = resolve_store(store)
    if location.is_file(STORE_MANIFEST):
        Store(location)


def _commit(store: Store, loader: _Loader, spill: Path, *, overwrite: bool) -> bool:
    """The spilled rows as the model's rows, in one commit; True when rows were replaced.

    When the model holds rows of another provenance (and `overwrite`), those are deleted
    and the provenance changed first (`ModelTable.claim`): a kill at that moment leaves
    the model empty, never mixed, and the same import fills it.
    """
    assert loader.model is not None
    table = store.table(loader.model)
    had_rows = table.exists() and bool(table.open().files)
    # Read, not mapped: mapped pages would count in the process's memory, growing with
    # the file; read batches are freed once written.
    with pa.OSFile(str(spill), "rb") as source:
        reader = pa.ipc.open_stream(source)
        table.claim(loader.provenance, reader.schema, overwrite=overwrite)
        try:
            replace_rows(table, reader.schema, reader, "import-json")
        except Exception as exc:  # delta-rs raises several kinds
            raise StoreError(f"cannot write {table}: {store.location.scrub(str(exc))}") from exc
    return had_rows


def _sniff(path: Path) -> int:
    """Check the file starts like a JSON object; returns the offset to parse from."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except IsADirectoryError:
        raise InputError(f"{path} is a folder, not a JSON file.") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}.") from exc
    start = bom_length(head)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\0" in head[:4]:
        raise InputError(
            f"{path} is not UTF-8 text (it looks like UTF-16 or UTF-32).\n"
            "Hint: JSON files are UTF-8; convert it, e.g. `iconv -f UTF-16 -t UTF-8`."
        )
    body = head[start:].lstrip(b" \t\r\n")
    if not body:
        if len(head) < (1 << 16):
            raise InputError(f"{path} is empty.\n{HINT}")
        raise InputError(f"{path} starts with 64 KiB of blanks; it is not a trainer JSON.")
    if body[:1] == b"[":
        raise InputError(
            f"{path}: the top level is a list; expected an object keyed by identity "
            '({"<identity>": {"face_image_path": ..., ...}, ...}).\n' + HINT
        )
    if body[:1] != b"{":
        raise InputError(
            f"{path} is not a JSON object: it starts with {body[:20]!r}; expected '{{'.\n" + HINT
        )
    return start


class _HashingReader:
    """A binary file that hashes what is read from it (to notice a file changed mid-import)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        return data


@dataclass
class _Loader:
    """The file's identities (read and checked by `IdentityReader`), spilled as rows."""

    path: Path
    base: Path
    model: str | None
    dim: int | None = None
    identities: int = 0
    frames: int = 0
    provenance: dict[str, Any] = field(default_factory=dict)

    def spill(self, start: int, path: Path) -> None:
        """Parse and check the whole file into an Arrow stream at `path` (Delta's types).

        The file is read once: hashed as it is parsed, its stat compared before and
        after (what git's index compares) to notice a change while it was read.
        """
        writer: pa.ipc.RecordBatchStreamWriter | None = None
        before = _stat_signature(self.path)
        with open(self.path, "rb") as raw:
            hashing = _HashingReader(raw)
            hashing.digest.update(raw.read(start))  # a BOM
            reader = IdentityReader(
                self.path, self.base, model=self.model, raw=hashing, start=start
            )
            try:
                for values in reader:
                    if writer is None:
                        target = self._settled(reader)
                        writer = pa.ipc.new_stream(str(path), target.schema)
                    writer.write_table(store_rows(values, target))
            finally:
                if writer is not None:
                    writer.close()
            hashing.digest.update(raw.read())  # anything the reader did not need
        self.identities, self.frames = reader.identities, reader.frames
        if _stat_signature(self.path) != before:
            raise InputError(f"{self.path} changed while it was being imported; try again.")
        self.provenance["json_sha256"] = hashing.digest.hexdigest()

    def _settled(self, reader: IdentityReader) -> RowTarget:
        """The first identity settled the model, the dim and the format: the provenance,
        and what every row shares."""
        assert reader.model is not None and reader.dim is not None
        self.model, self.dim = reader.model, reader.dim
        self.provenance = {
            "model": self.model,
            "feature_dim": self.dim,
            "source": "json",
            "json_file": self.path.name,
            "json_sha256": None,  # once the whole file is read
            "base_dir": self.base.as_posix(),
            "featstore_version": featstore.__version__,
            **({"json_format": "3d"} if reader.three_d else {}),
        }
        now = pa.scalar(datetime.now(timezone.utc), pa.timestamp("us", "UTC"))
        return RowTarget(self.model, now, rows_schema(self.dim))


def _stat_signature(path: Path) -> tuple[int, int, int, int]:
    stat = path.stat()
    return (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
