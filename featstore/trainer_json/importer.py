"""`import-json`: a trainer JSON in the new format (docs/formats.md) into the store, streamed.

Users of the seed's script already hold `valid_images.json` files; importing one gives a
store without extracting again. What becomes of the file:

- One partition per identity: a `face` row and one `frame` row per `video_data` entry,
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

Nothing is written under the model's folder until the whole file has parsed and
checked: identities are written to a staging folder inside the store (`_import-...`,
which readers never glob) and the finished model folder is renamed into place. Any
error removes the staging folder, so the store is left as it was.

Numbers become the nearest float32 to the decimal written, rounded once. The parser
gives float64s, and rounding those to float32 rounds twice, which is wrong only when the
float64 lands exactly halfway between two float32 values: among the shortest float32
decimals that orjson writes (and export-json writes), `7.038531e-26` is the one such
case (checked over all 2^32 values). When a number lands halfway, the file is read again
with numbers as Decimal (slower) and rounded exactly.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

import featstore
from featstore.errors import InputError, ProvenanceMismatchError
from featstore.store.layout import (
    DATA_FILE,
    PROVENANCE_FILE,
    STORE_MANIFEST,
    model_dir,
    open_store,
    pid_alive,
    provenance_differences,
    read_provenance,
    write_json_atomic,
    write_partition,
)
from featstore.trainer_json.identity_rows import (
    HINT,
    Check,
    HalfwayNumber,
    RowTarget,
    describe,
    identity_table,
)

_STAGING_PREFIX = "_import-"


@dataclass(frozen=True)
class ImportSummary:
    """What `import_json` added to the store."""

    path: Path  # the JSON file
    store: Path
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
            f"{self.identities} identities, {self.frames} frames from {self.path}; "
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
    digest = _sha256(json_path)
    base = Path(os.path.abspath(base_dir if base_dir is not None else json_path.parent))
    store_path = Path(store)
    made_store = not (store_path / STORE_MANIFEST).exists()
    made_folder = not store_path.exists()
    stage: Path | None = None
    try:
        store_path = open_store(store_path)
        _remove_stale_staging(store_path)
        stage = store_path / f"{_STAGING_PREFIX}{_owner()}-{uuid.uuid4().hex[:8]}"
        stage.mkdir()
        loader = _Loader(json_path, digest, base, model, stage, store_path, overwrite)
        try:
            loader.load(opening)
        except HalfwayNumber:
            # Rare (see the module's docstring): read the file again, numbers as decimals.
            shutil.rmtree(stage)
            stage.mkdir()
            loader = _Loader(json_path, digest, base, model, stage, store_path, overwrite)
            loader.exact = True
            loader.load(opening)
        replaced = loader.commit()
    except BaseException:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        if made_store:  # leave no trace of a store this call began
            (store_path / STORE_MANIFEST).unlink(missing_ok=True)
            if made_folder:
                with contextlib.suppress(OSError):  # only if empty: never remove others' files
                    store_path.rmdir()
        raise
    assert loader.model is not None and loader.dim is not None
    return ImportSummary(
        path=json_path,
        store=store_path,
        model=loader.model,
        feature_dim=loader.dim,
        identities=loader.identities,
        frames=loader.frames,
        base_dir=base,
        replaced=replaced,
    )


def _sniff(path: Path) -> int:
    """Check the file starts like a JSON object; returns the offset to parse from."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except IsADirectoryError:
        raise InputError(f"{path} is a folder, not a JSON file.") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}.") from exc
    start = 3 if head.startswith(b"\xef\xbb\xbf") else 0  # a UTF-8 BOM: tolerated
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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            digest.update(chunk)
    return digest.hexdigest()


def _owner() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _remove_stale_staging(store: Path) -> None:
    """Delete staging folders that killed imports of this host left behind."""
    host = socket.gethostname()
    for folder in store.glob(f"{_STAGING_PREFIX}*"):
        owner = folder.name[len(_STAGING_PREFIX) :].rsplit("-", 2)
        if len(owner) != 3 or owner[0] != host or not owner[1].isdigit():
            continue
        pid = int(owner[1])
        if pid != os.getpid() and not pid_alive(pid):
            shutil.rmtree(folder, ignore_errors=True)


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
    """Reads the file identity by identity and writes each into the staging folder."""

    path: Path
    digest: str
    base: Path
    model: str | None
    stage: Path
    store: Path
    overwrite: bool
    exact: bool = False  # numbers as Decimal (slower), not float
    dim: int | None = None
    file_model: str | None = None
    first: str | None = None  # the first identity, named when later ones disagree
    identities: int = 0
    frames: int = 0
    provenance: dict[str, Any] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    # One import time for every row (as an Arrow scalar: converting a datetime per row
    # makes pyarrow cache objects on each call).
    extracted_at: pa.Scalar = field(
        default_factory=lambda: pa.scalar(datetime.now(timezone.utc), pa.timestamp("us", "UTC"))
    )

    def load(self, start: int) -> None:
        import ijson

        last: str | None = None
        with open(self.path, "rb") as raw:
            reader = _HashingReader(raw)
            reader.digest.update(raw.read(start))
            try:
                items = ijson.kvitems(reader, "", use_float=not self.exact)
                for identity, value in items:
                    self._identity(identity, value)
                    last = identity
            except ijson.JSONError as exc:
                raise _syntax_error(self.path, str(exc), last, self.identities) from exc
            rest = raw.read()  # ijson stops at the end of the object; trailing blanks
            reader.digest.update(rest)
        if not self.identities:
            raise InputError(f"{self.path} holds no identity (it is an empty object).")
        if reader.digest.hexdigest() != self.digest:
            raise InputError(f"{self.path} changed while it was being imported; try again.")

    def target(self) -> RowTarget:
        assert self.model is not None
        return RowTarget(self.model, self.base, self.extracted_at)

    def _identity(self, identity: str, value: Any) -> None:
        check = Check(self.path, identity, self.exact)
        if not identity:
            raise check.fail("its name", "a non-empty identity", "an empty string")
        if identity in self.seen:
            raise check.fail("its name", "each identity once", "it a second time")
        self.seen.add(identity)
        if not isinstance(value, dict):
            raise check.fail("its value", "an object", describe(value))
        if "face_features" not in value and "video_images" in value:
            raise InputError(
                f"{self.path}: identity {identity!r} is in the old format (face_image_path and "
                "video_images only): it has no features to import.\n"
                "Hint: extract the images with `featstore extract` instead."
            )
        self._settle_model(check, value)
        assert self.model is not None and self.dim is not None
        table, frames = identity_table(check, value, self.target(), self.dim)
        write_partition(
            self.stage,
            self.model,
            identity,
            table,
            fingerprint=f"json:{self.digest}",
            provenance=self.provenance,
        )
        self.identities += 1
        self.frames += frames

    def _settle_model(self, check: Check, value: dict[str, Any]) -> None:
        """Model and dim from the first identity; later ones must agree."""
        file_model = value.get("dinov2_model")
        if file_model is not None and not isinstance(file_model, str):
            raise check.fail("dinov2_model", "a string", describe(file_model))
        declared = value.get("feature_dim")
        if declared is not None and (type(declared) is not int or declared < 1):
            raise check.fail("feature_dim", "a positive integer", describe(declared))
        features = value.get("face_features")
        dim: int | None = declared
        if dim is None and isinstance(features, list):
            dim = len(features)
        if self.first is None:
            self.first = check.identity
            self.file_model = file_model
            self.model = self.model or file_model
            if self.model is None:
                raise InputError(
                    f"{self.path} does not name its model (no dinov2_model in identity "
                    f"{check.identity!r}).\nHint: pass --model, e.g. --model dinov2_vitb14."
                )
            if dim is None:
                raise check.fail("face_features", "a list of numbers", describe(features))
            self.dim = dim
            for name in {self.model, file_model} - {None}:  # --model, and the file's claim
                _check_model_dim(self.path, str(name), dim)
            self.provenance = {
                "model": self.model,
                "feature_dim": dim,
                "source": "json",
                "json_file": self.path.name,
                "json_sha256": self.digest,
                "base_dir": self.base.as_posix(),
                "featstore_version": featstore.__version__,
            }
            _check_mixing(self.store, self.model, self.provenance, overwrite=self.overwrite)
            return
        if file_model != self.file_model:
            raise check.fail(
                "dinov2_model",
                f"{self.file_model!r} like identity {self.first!r} (one model per file)",
                repr(file_model),
            )
        if dim is not None and dim != self.dim:
            raise check.fail(
                "feature_dim",
                f"{self.dim} like identity {self.first!r} (features of one model per file)",
                str(dim),
            )

    def commit(self) -> bool:
        """Move the staged model folder into the store; True when it replaced one."""
        assert self.model is not None
        _check_mixing(self.store, self.model, self.provenance, overwrite=self.overwrite)
        staged = model_dir(self.stage, self.model)
        write_json_atomic(staged / PROVENANCE_FILE, self.provenance)
        target = model_dir(self.store, self.model)
        replaced = any(target.glob(f"identity=*/{DATA_FILE}"))
        if target.exists():
            # Move aside first so old and new rows never sit side by side.
            trash = self.store / f"_trash-{uuid.uuid4().hex}"
            os.replace(target, trash)
            os.replace(staged, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staged, target)
        shutil.rmtree(self.stage, ignore_errors=True)
        return replaced


def _check_model_dim(path: Path, model: str, dim: int) -> None:
    """A known DINOv2 model name must come with that model's dim."""
    from featstore.extraction.dinov2_specs import MODEL_SPECS

    spec = MODEL_SPECS.get(model)
    if spec is not None and spec.embed_dim != dim:
        raise InputError(
            f"{path}: model {model} makes {spec.embed_dim}-dim features, but the file's "
            f"features have {dim}.\nHint: pass the right --model, or check dinov2_model and "
            "feature_dim in the file."
        )


def _check_mixing(store: Path, model: str, provenance: dict[str, Any], *, overwrite: bool) -> None:
    stored = read_provenance(store, model)
    if stored is None or overwrite:
        return
    diffs = provenance_differences(stored, provenance)
    if diffs and any(model_dir(store, model).glob(f"identity=*/{DATA_FILE}")):
        raise ProvenanceMismatchError(
            f"model {model} of {store} holds rows made differently from this import:\n  "
            + "\n  ".join(diffs)
            + "\nHint: import under another --model or into another --store, or pass "
            "--overwrite to replace that model's rows."
        )


def _syntax_error(path: Path, message: str, last: str | None, count: int) -> InputError:
    where = f"after identity {last!r} (#{count})" if last is not None else "in the first identity"
    detail = message.strip().splitlines()[0] if message.strip() else message
    if "premature EOF" in message:
        return InputError(
            f"{path} is truncated: the JSON ends {where}.\n"
            "Hint: the file was cut short (an interrupted copy or write); make it again."
        )
    if "UTF8" in message:
        return InputError(
            f"{path} is not UTF-8 text: invalid bytes {where}.\n"
            "Hint: JSON files are UTF-8; re-encode it (e.g. `iconv -f LATIN1 -t UTF-8`)."
        )
    if any(token in message for token in ("NaN", "Infinity")):
        return InputError(
            f"{path} holds NaN or Infinity {where}: not JSON numbers (Python's json.dump "
            "writes them for non-finite floats), and not usable as features.\n" + HINT
        )
    return InputError(f"{path} is not valid JSON {where}: {detail}.\n{HINT}")
