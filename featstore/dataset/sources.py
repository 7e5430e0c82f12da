"""Where the Dataset's samples come from: a store, or the trainer's JSON (docs/formats.md).

Each source is described (what identifies its samples, for the cache key) and built into
`SampleColumns`: the ok frames of valid identities, ordered by identity (Unicode code
point order, as `export-json` sorts them) then frame, with the identity's frontal features
as the target. A store and its `export-json` output give identical columns.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import pyarrow as pa
from numpy.typing import NDArray

from featstore.dataset.cache import (
    FRAME_FIELDS,
    SAMPLE_FIELDS,
    PositionEncoding,
    SampleColumns,
)
from featstore.dataset.npy_source import store_keypoint_fields
from featstore.dataset.store_columns import column_values, read_located, resolve_paths
from featstore.errors import InputError, StoreError
from featstore.extraction.inputs import IdentityInputs, InputTree
from featstore.store import ModelSnapshot, Store
from featstore.store.fields import JSON_FORMATS
from featstore.store.store import read_failure
from featstore.store.where import check_where, columns_of, evaluation_errors, where_failed
from featstore.trainer_json.formats import identity_format
from featstore.trainer_json.identity_values import IdentityValues
from featstore.trainer_json.json_stream import bom_length

JsonFormat = Literal["new", "old"]  # "new": the new format or the 3D one
_OLD = JSON_FORMATS["old"]
# Columns of the `valid_frames` view behind each per-frame field.
_STORE_COLUMNS = {name: field.name for name, field in SAMPLE_FIELDS.items()}
# The frames (and frontal images) the 3D trainer's JSON keeps: those with a head pose.
_POSED = """euler_angles IS NOT NULL AND identity IN (
               SELECT identity FROM faces WHERE status = 'ok' AND euler_angles IS NOT NULL)"""


# --- stores ----------------------------------------------------------------------------


def describe_store(
    store: Store,
    info: ModelSnapshot,
    where: str | None,
    encoding: PositionEncoding,
    keypoints: bool = True,
) -> dict[str, Any]:
    """What a store's samples are made from: one version of the model's table.

    A Delta version never changes once committed, so (table id, version) names the rows
    exactly: no file is listed or stat-ed, and a training run can record and reproduce
    what it read (`FeatureDataset(..., version=N)`).
    """
    location = store.location
    return {
        "source": {
            "kind": "store",
            # Local: the absolute folder; remote: the URI without secrets.
            "path": os.path.abspath(location.local) if location.local else location.display,
            "model": info.name,
            "where": where,
            "position_encoding": encoding,  # euler_angles keeps posed frames only
            # With the keypoints or without: two selections, each its own folder.
            "keypoints_3d": keypoints,
        },
        "signature": info.signature,
        # A `where` may read identity_consistency, made from the ArcFace tables: their
        # versions are part of what the samples are made from.
        "arcface": _arcface_versions(store) if where else {},
        "provenance": info.provenance,
    }


def _arcface_versions(store: Store) -> dict[str, str]:
    from featstore.store.consistency import is_arcface_model

    return {
        name: store.model(name).signature for name in store.model_names() if is_arcface_model(name)
    }


def read_store(
    store: Store,
    info: ModelSnapshot,
    where: str | None,
    encoding: PositionEncoding,
    spool: Path | None = None,
    keypoints: bool = True,
) -> SampleColumns:
    """The samples of one model of a store, `where` applied to the frames.

    With `encoding` "euler_angles", the samples are those of `export-json --format 3d`:
    frames with a head pose, of identities whose frontal image has one. `spool`: a folder
    to create for the frames' features (the bulk of the samples), written there mapped
    instead of held in memory; the cache moves the file in. `keypoints`: make the fields
    `STORE_KEYPOINT_FIELDS` (their scale solves every frontal image's pose again); without,
    the samples have no such fields.

    DuckDB selects and orders the samples over their small columns; on a local store the
    wide columns are then read from the files by pyarrow (`featstore.dataset.store_columns`).
    """
    import duckdb
    import pyarrow.compute as pc  # here: a tenth of a second to import, for stores only

    located = store.location.local is not None and bool(info.files)
    with info.connect(located=located) as con:
        predicate = check_where(con, where)
        columns = {r[0] for r in con.execute("DESCRIBE frames").fetchall()}
        if encoding == "euler_angles":
            info.require_pose(alternative="use position_encoding='spherical_angles'")
            predicate = f"({predicate}) AND {_POSED}"
        fields = ", ".join(
            c if c in columns else f"NULL::{_null_type(c)} AS {c}" for c in _STORE_COLUMNS.values()
        )
        posed = "pose_landmarks_3d" if "pose_landmarks_3d" in columns else "NULL::FLOAT[3][5]"
        # Located rows: their wide columns are read from the files afterwards.
        face_columns = (
            "_file, _row" if located else f"image_path, features, {posed} AS pose_landmarks_3d"
        )
        frame_columns = "_file, _row" if located else f"image_path, features, {fields}"
        try:
            faces = con.sql(
                f"""SELECT identity, {face_columns} FROM faces
                    WHERE status = 'ok' ORDER BY identity"""
            ).to_arrow_table()
            frames = con.sql(
                f"""SELECT identity, {frame_columns} FROM valid_frames
                    WHERE {predicate} ORDER BY identity, frame_index"""
            ).to_arrow_table()
        except evaluation_errors() as exc:  # e.g. CAST(identity AS INTEGER) on a name
            if where is None:
                raise read_failure(exc, store) from exc
            raise where_failed(where, exc, columns_of(con, "frames")) from exc
        except duckdb.Error as exc:
            raise read_failure(exc, store) from exc
    identities = pc.unique(frames.column("identity")) if len(frames) else None
    if identities is None:
        return _empty_columns(info.dim, info.name)
    faces = faces.filter(pc.is_in(faces.column("identity"), value_set=identities))
    if not faces.column("identity").equals(pa.chunked_array([identities])):
        raise StoreError(
            f"model {info.name} of {store.location}: the frontal rows do not match the valid "
            "frames' identities (the store was changed while read?).\nHint: try again."
        )
    base = info.provenance.get("base_dir")
    mapped: dict[str, Path] = {}
    if located:
        if spool is not None:
            spool.mkdir(parents=True, exist_ok=True)
            mapped["features"] = spool / "input_features.f32"
        (frame_values, frame_paths), (face_values, face_paths) = read_located(
            info,
            [(frames, _frame_shapes(info.dim), mapped), (faces, _face_shapes(info.dim), {})],
        )
    else:
        frame_values = {
            c: column_values(frames.column(c), shape)
            for c, shape in _frame_shapes(info.dim).items()
        }
        face_values = {
            c: column_values(faces.column(c), shape) for c, shape in _face_shapes(info.dim).items()
        }
        frame_paths = frames.column("image_path").combine_chunks()
        face_paths = faces.column("image_path").combine_chunks()
    identity_index = (
        pc.index_in(frames.column("identity"), value_set=identities).to_numpy().astype(np.int32)
    )
    values = {name: frame_values[column] for name, column in _STORE_COLUMNS.items()}
    derived = (
        store_keypoint_fields(
            info, values["pose_landmarks_3d"], face_values["pose_landmarks_3d"], identity_index
        )
        if keypoints
        else {}
    )
    return SampleColumns(
        identity_index=identity_index,
        input_features=frame_values["features"],
        fields={**values, **derived},
        image_path=resolve_paths(frame_paths, base),
        identities=identities.to_pylist(),
        target_features=face_values["features"],
        face_image_path=resolve_paths(face_paths, base),
        model=info.name,
        features_file=mapped.get("features") if located else None,
    )


def _null_type(column: str) -> str:
    """The views' type of a per-frame column a store made before it lacks."""
    shape = FRAME_FIELDS[next(k for k, v in _STORE_COLUMNS.items() if v == column)]
    return "FLOAT" + "".join(f"[{n}]" for n in reversed(shape))


def _frame_shapes(dim: int) -> dict[str, tuple[int, ...]]:
    """The stored columns a frame's sample reads, and the shape of one value."""
    return {
        "features": (dim,),
        **{column: FRAME_FIELDS[name] for name, column in _STORE_COLUMNS.items()},
    }


def _face_shapes(dim: int) -> dict[str, tuple[int, ...]]:
    """The stored columns a frontal image's values read (its pose gives the keypoints)."""
    return {"features": (dim,), "pose_landmarks_3d": FRAME_FIELDS["pose_landmarks_3d"]}


def _empty_columns(dim: int, model: str) -> SampleColumns:
    return SampleColumns(
        identity_index=np.zeros(0, np.int32),
        input_features=np.zeros((0, dim), np.float32),
        fields={name: np.zeros((0, *shape), np.float32) for name, shape in FRAME_FIELDS.items()},
        image_path=pa.array([], pa.string()),
        identities=[],
        target_features=np.zeros((0, dim), np.float32),
        face_image_path=pa.array([], pa.string()),
        model=model,
    )


# --- JSON files ------------------------------------------------------------------------


@dataclass(frozen=True)
class JsonDocument:
    """An old-format trainer JSON file (image paths only), parsed and checked."""

    path: Path
    entries: dict[str, Any]


def read_old_json(path: Path) -> JsonDocument:
    """Parse an old-format file whole (paths only: small); every identity needs its paths.

    Called once `json_format` found the file's first identity in the old format.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}.") from exc
    try:
        entries = orjson.loads(data[bom_length(data) :])
    except orjson.JSONDecodeError as exc:
        raise InputError(
            f"{path} is not valid JSON: {exc}.\nHint: `featstore validate {path}` locates "
            "every problem in the file."
        ) from exc
    if not isinstance(entries, dict):
        raise InputError(
            f"{path}: expected an object keyed by identity at the top, found "
            f"{type(entries).__name__}."
        )
    if not entries:
        raise InputError(f"{path} holds no identities.")
    first_name = next(iter(entries))
    for name, entry in entries.items():
        if not isinstance(entry, dict):
            raise InputError(
                f"{path}: identity {name!r} is a {type(entry).__name__}, expected an object."
            )
        missing = [k for k in (_OLD.face_path, _OLD.frames) if k not in entry]
        if missing:
            raise InputError(
                f"{path}: identity {name!r} has no {' or '.join(missing)}, though the file "
                f"is in the old format (identity {first_name!r} has no face_features)."
                "\nHint: regenerate the file with `featstore export-json`; "
                f"`featstore validate {path}` lists every problem."
            )
    return JsonDocument(path, entries)


def describe_json(path: Path) -> dict[str, Any]:
    """What a JSON file's samples are made from: the file, by what git's index compares.

    Size, mtime_ns, ctime_ns and inode (see `featstore.extraction.fingerprint` for why
    these and not a content hash): a same-size rewrite with its mtime restored moves the ctime, a
    file replaced by another has another inode; either makes a new cache key.
    """
    try:
        stat = path.stat()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}.") from exc
    return {
        "source": {"kind": "json", "path": os.path.abspath(path)},
        "signature": f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}:{stat.st_ino}",
    }


def json_format(path: Path) -> JsonFormat:
    """The file's format, from its first identity (`identity_format`): "new" for the new
    and 3D formats, else "old" (docs/formats.md).

    Reads the first identity only; a file that is not a JSON object is refused here.
    """
    from featstore.trainer_json.identity_rows import text_error
    from featstore.trainer_json.json_stream import JsonTextError, read_members, text_start

    try:
        with open(path, "rb") as raw:
            first = next(iter(read_members(raw, start=text_start(raw))), None)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}.") from exc
    except JsonTextError as exc:
        raise text_error(path, exc) from None
    if first is None:
        raise InputError(f"{path} holds no identity (it is an empty object).")
    value = first.value
    if not isinstance(value, dict):
        return "new"  # whose reader says what is wrong, as import-json does
    return "new" if identity_format(value) in ("new", "3d") else "old"


def read_new_json(path: Path, model: str | None, spool: Path | None = None) -> SampleColumns:
    """The samples of a new-format file, read identity by identity.

    Read and checked by `IdentityReader`, as `import-json` reads it: the same files are
    accepted and refused, with the same messages. The first identity sets the model and
    dim, every other must agree; `model`, when given, must be the file's.

    Args:
        spool: a folder to create for the frames' features (the bulk of the samples),
            written there as they are read and mapped back, so the memory held does
            not grow with the file; None keeps them in memory. A file whose identities
            are not in code point order (the samples' order) is put in order with one
            copy in memory.
    """
    from featstore.trainer_json.identity_rows import IdentityReader

    base = path.absolute().parent
    reader = IdentityReader(path, base, model=model)
    parts: dict[str, dict[str, NDArray[np.float32]]] = {}
    paths: dict[str, list[str]] = {}
    spooled: list[NDArray[np.float32]] = []  # in memory when there is no spool
    sink = None
    if spool is not None:
        spool.mkdir()
        sink = open(spool / "frames.f32", "wb")  # noqa: SIM115 (closed below)
    try:
        for values in _checked(reader, path, model):
            if sink is not None:
                values.features[1:].tofile(sink)
            else:
                spooled.append(values.features[1:])
            # A copy of the target: a view would keep all of the identity's features alive.
            target = values.features[0].copy()
            parts[values.name] = {"target": target, **_frame_fields(values)}
            paths[values.name] = [
                posixpath.normpath(posixpath.join(base.as_posix(), p)) for p in values.paths
            ]
    finally:
        if sink is not None:
            sink.close()
    assert reader.model is not None and reader.dim is not None
    names = sorted(parts)  # code point order, as export-json and the store reader
    counts = [len(paths[name]) - 1 for name in names]
    samples = int(sum(counts))
    in_order = names == list(parts)
    features_file = None
    if spool is not None:
        inputs: NDArray[np.float32] = np.memmap(
            spool / "frames.f32", dtype=np.float32, mode="r", shape=(samples, reader.dim)
        )
        if in_order:  # the spool is the cache's features file as it stands
            features_file = spool / "frames.f32"
        else:
            inputs = _in_order(inputs, list(parts), paths, names)
    elif in_order:
        inputs = np.concatenate(spooled)
    else:
        read = list(parts)
        order = sorted(range(len(read)), key=read.__getitem__)
        inputs = np.concatenate([spooled[i] for i in order])
    del spooled

    def frames_of(field: str) -> NDArray[np.float32]:
        return np.concatenate([parts[name].pop(field) for name in names])

    frame_fields = {field: frames_of(field) for field in FRAME_FIELDS if field != "det_score"}
    targets = np.stack([parts[name]["target"] for name in names])
    return SampleColumns(
        identity_index=np.repeat(np.arange(len(names), dtype=np.int32), counts),
        input_features=inputs,
        fields={**frame_fields, "det_score": np.full(samples, np.nan, np.float32)},
        image_path=pa.array([p for name in names for p in paths[name][1:]], pa.string()),
        identities=names,
        target_features=targets,
        face_image_path=pa.array([paths[name][0] for name in names], pa.string()),
        model=reader.model,
        features_file=features_file,
    )


def _in_order(
    inputs: NDArray[np.float32], read: list[str], paths: dict[str, list[str]], names: list[str]
) -> NDArray[np.float32]:
    """Rows spooled in file order (`read`), gathered in sample order (`names`)."""
    starts, at = {}, 0
    for name in read:
        starts[name] = at
        at += len(paths[name]) - 1
    return np.concatenate([inputs[starts[n] : starts[n] + len(paths[n]) - 1] for n in names])


def _checked(reader: Any, path: Path, model: str | None) -> Iterator[IdentityValues]:
    """The reader's identities, with what a Dataset needs more: the model asked for, frames."""
    for values in reader:
        name = values.name
        if model is not None and reader.file_model not in (None, model):
            raise InputError(
                f"{path}: the features were made with {reader.file_model} (identity "
                f"{name!r}), not with model={model!r}.\nHint: pass "
                f"model={reader.file_model!r} or None."
            )
        if not values.frames:
            raise InputError(
                f"{path}: identity {name!r} has no frames (video_data is empty); every "
                "identity needs at least one.\nHint: remove the identity, or regenerate the "
                "file with `featstore export-json`, which leaves such identities out."
            )
        yield values


def _frame_fields(values: IdentityValues) -> dict[str, NDArray[np.float32]]:
    """The frames' per-frame fields (FRAME_FIELDS but det_score); NaN where the file's
    format has none (the pose in the new format, the angles in the 3D one)."""
    n = values.frames

    def frames_of(array: NDArray[np.float32] | None, field: str) -> NDArray[np.float32]:
        if array is None:
            return np.full((n, *FRAME_FIELDS[field]), np.nan, np.float32)
        return array[1:] if len(array) > n else array  # per row: drop the frontal image's

    # IdentityValues' attributes are named like the store's columns; the npy trainers'
    # keypoints are not in a JSON file.
    return {
        field: frames_of(getattr(values, _STORE_COLUMNS.get(field, ""), None), field)
        for field in FRAME_FIELDS
        if field != "det_score"  # not in the trainer's JSON
    }


def _frames(path: Path, name: str, field: str, value: object) -> list[Any]:
    """An identity's frame list, refused when it is not a list or is empty."""
    if not isinstance(value, list) or not value:
        raise InputError(
            f"{path}: identity {name!r} has no frames ({field} is "
            f"{'empty' if isinstance(value, list) else type(value).__name__}); every identity "
            "needs at least one.\nHint: remove the identity, or regenerate the file with "
            "`featstore export-json`, which leaves such identities out."
        )
    return value


def _json_path(value: object, base: Path) -> str | None:
    """A path from the file, resolved as docs/formats.md says; None where absent."""
    if not isinstance(value, str):
        return None
    return posixpath.normpath((base / value.replace("\\", "/")).as_posix())


def old_json_inputs(document: JsonDocument) -> InputTree:
    """The images an old-format file lists, checked to exist, as extraction inputs."""
    path, base = document.path, document.path.absolute().parent
    identities = []
    for name in sorted(document.entries):
        entry = document.entries[name]
        face = _existing(path, name, "face_image_path", entry["face_image_path"], base)
        frames = _frames(path, name, "video_images", entry["video_images"])
        paths = tuple(
            _existing(path, name, f"video_images[{i}]", frame, base)
            for i, frame in enumerate(frames)
        )
        identities.append(IdentityInputs(name, face, paths, has_video_dir=True))
    return InputTree(identities=identities)


def _existing(path: Path, name: str, field: str, value: object, base: Path) -> Path:
    resolved = _json_path(value, base)
    if resolved is None:
        raise InputError(f"{path}: identity {name!r}, {field}: expected a path, found {value!r}.")
    if not Path(resolved).is_file():
        raise InputError(
            f"{path}: identity {name!r}, {field} {value!r} does not resolve to a file "
            f"(looked at {resolved}).\nHint: relative paths resolve against the JSON file's "
            "folder; move the file beside the data or fix the paths."
        )
    return Path(resolved)
