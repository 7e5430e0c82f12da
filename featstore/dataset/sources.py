"""Where the Dataset's samples come from: a store, or the trainer's JSON (docs/formats.md).

Each source is described (what identifies its samples, for the cache key) and built into
`SampleColumns`: the ok frames of valid identities, ordered by identity (Unicode code
point order, as `export-json` sorts them) then frame, with the identity's frontal features
as the target. A store and its `export-json` output give identical columns.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from featstore.dataset.cache import FRAME_FIELDS, SampleColumns
from featstore.errors import InputError, StoreError
from featstore.extraction.dinov2_specs import MODEL_SPECS
from featstore.extraction.inputs import IdentityInputs, InputTree
from featstore.store.layout import DATA_FILE, PROVENANCE_FILE, model_key
from featstore.store.query import ModelInfo, Store
from featstore.store.where import check_where

JsonFormat = Literal["new", "old"]
# Columns of the `valid_frames` view behind each per-frame field.
_STORE_COLUMNS = {
    "position_encoding": "spherical_angles",
    "landmarks_2d": "landmarks_2d",
    "landmarks_3d": "landmarks_3d",
    "box": "box",
    "avg_angle": "avg_angle",
    "det_score": "det_score",
}
# Keys of a new-format frame behind each per-frame field (the JSON has no det_score).
_JSON_KEYS = {
    "position_encoding": "spherical_angles",
    "landmarks_2d": "landmarks_2d",
    "landmarks_3d": "landmarks_3d",
    "box": "box",
    "avg_angle": "avg_angle",
}


# --- stores ----------------------------------------------------------------------------


def describe_store(store: Store, info: ModelInfo, where: str | None) -> dict[str, Any]:
    """What a store's samples are made from: its model's files (name, size, time).

    Listed through the store's pyarrow filesystem, so local and object stores alike.
    """
    import pyarrow.fs as pafs

    location = store.location
    folder = location.path(model_key(info.name))
    selector = pafs.FileSelector(folder, recursive=True, allow_not_found=True)
    entries = sorted(
        f"{entry.path[len(folder) :]}:{entry.size}:{entry.mtime_ns}"
        for entry in location.fs.get_file_info(selector)
        if entry.type == pafs.FileType.File and entry.base_name in (DATA_FILE, PROVENANCE_FILE)
    )
    signature = hashlib.sha256("\n".join(entries).encode("utf-8", "surrogateescape"))
    return {
        "source": {
            "kind": "store",
            # Local: the absolute folder; remote: the URI without secrets.
            "path": os.path.abspath(location.local) if location.local else location.display,
            "model": info.name,
            "where": where,
        },
        "signature": signature.hexdigest(),
        "provenance": info.provenance,
    }


def read_store(store: Store, info: ModelInfo, where: str | None) -> SampleColumns:
    """The samples of one model of a store, `where` applied to the frames."""
    with store.connect(model=info.name) as con:
        predicate = check_where(con, where)
        fields = ", ".join(_STORE_COLUMNS.values())
        frames = con.sql(
            f"""SELECT identity, image_path, features, {fields} FROM valid_frames
                WHERE {predicate} ORDER BY identity, frame_index"""
        ).to_arrow_table()
        faces = con.sql(
            """SELECT identity, image_path, features FROM faces
               WHERE status = 'ok' ORDER BY identity"""
        ).to_arrow_table()
    identities = pc.unique(frames.column("identity")) if len(frames) else None
    if identities is None:
        return _empty_columns(info.dim, info.name)
    faces = faces.filter(pc.is_in(faces.column("identity"), value_set=identities))
    if faces.column("identity").to_pylist() != identities.to_pylist():
        raise StoreError(
            f"model {info.name} of {store.location}: the frontal rows do not match the valid "
            "frames' identities (the store was changed while read?).\nHint: try again."
        )
    base = info.provenance.get("base_dir")
    return SampleColumns(
        identity_index=pc.index_in(frames.column("identity"), value_set=identities)
        .to_numpy()
        .astype(np.int32),
        input_features=_column_values(frames.column("features"), (info.dim,)),
        fields={
            name: _column_values(frames.column(column), FRAME_FIELDS[name])
            for name, column in _STORE_COLUMNS.items()
        },
        image_path=_resolve_paths(frames.column("image_path"), base),
        identities=identities.to_pylist(),
        target_features=_column_values(faces.column("features"), (info.dim,)),
        face_image_path=_resolve_paths(faces.column("image_path"), base),
        model=info.name,
    )


def _column_values(column: pa.ChunkedArray, shape: tuple[int, ...]) -> NDArray[np.float32]:
    """A (nested) fixed-size float column as `[N, *shape]` float32; nulls become NaN."""
    array = column.combine_chunks()
    while pa.types.is_fixed_size_list(array.type):
        array = array.flatten()
    values = pc.fill_null(array.cast(pa.float32()), np.float32("nan"))
    return values.to_numpy().reshape(len(column), *shape)


def _resolve_paths(column: pa.ChunkedArray, base: object) -> pa.Array:
    """Stored paths (relative to the extraction's base dir) as absolute posix paths."""
    paths = column.to_pylist()
    if isinstance(base, str):
        paths = [posixpath.normpath(posixpath.join(base, p)) for p in paths]
    return pa.array(paths, pa.string())


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
    """A trainer's JSON file, parsed, with its format decided."""

    path: Path
    entries: dict[str, Any]
    format: JsonFormat


def read_json(path: Path) -> JsonDocument:
    """Parse a trainer's JSON file and tell new format from old (docs/formats.md)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}.") from exc
    try:
        entries = orjson.loads(data)
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
    return JsonDocument(path, entries, _json_format(path, entries))


def _json_format(path: Path, entries: dict[str, Any]) -> JsonFormat:
    """New format when identities carry face_features and video_data; old with video_images."""
    first_name, first = next(iter(entries.items()))
    new = isinstance(first, dict) and "face_features" in first
    for name, entry in entries.items():
        if not isinstance(entry, dict):
            raise InputError(
                f"{path}: identity {name!r} is a {type(entry).__name__}, expected an object."
            )
        if new:
            missing = [k for k in ("face_features", "video_data") if k not in entry]
        else:
            missing = [k for k in ("face_image_path", "video_images") if k not in entry]
        if missing:
            kind = (
                f"new format (identity {first_name!r} has face_features)"
                if new
                else f"old format (identity {first_name!r} has no face_features)"
            )
            raise InputError(
                f"{path}: identity {name!r} has no {' or '.join(missing)}, though the file "
                f"is in the {kind}.\nHint: regenerate the file with `featstore export-json`; "
                f"`featstore validate {path}` lists every problem."
            )
    return "new" if new else "old"


def describe_json(path: Path) -> dict[str, Any]:
    """What a JSON file's samples are made from: the file (by size and time)."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}.") from exc
    return {
        "source": {"kind": "json", "path": os.path.abspath(path)},
        "signature": f"{stat.st_size}:{stat.st_mtime_ns}",
    }


def read_new_json(document: JsonDocument, model: str | None) -> SampleColumns:
    """The samples of a new-format file.

    Dims and model names are checked identity by identity (seed Q1): the first identity
    sets them, every other must agree, and the model's known dim must match.
    """
    path, entries = document.path, document.entries
    expected: tuple[str, int] | None = None
    names = sorted(entries)
    inputs: list[NDArray[np.float32]] = []
    fields: dict[str, list[NDArray[np.float32]]] = {name: [] for name in _JSON_KEYS}
    targets: list[NDArray[np.float32]] = []
    counts: list[int] = []
    frame_paths: list[str | None] = []
    face_paths: list[str | None] = []
    base = path.absolute().parent
    for name in names:
        entry = entries[name]
        found_model, dim = _json_model(path, name, entry)
        if expected is None:
            expected = (found_model, dim)
            if model is not None and model != found_model:
                raise InputError(
                    f"{path}: the features were made with {found_model} (identity {name!r}), "
                    f"not with model={model!r}.\nHint: pass model={found_model!r} or None."
                )
        elif (found_model, dim) != expected:
            raise InputError(
                f"{path}: identity {name!r} has {dim}-dim features of {found_model}, but "
                f"identity {names[0]!r} has {expected[1]}-dim features of {expected[0]}; one "
                "file must hold one model.\nHint: export each model to its own file."
            )
        targets.append(_floats(path, name, "face_features", entry["face_features"], (dim,)))
        face_paths.append(_json_path(entry.get("face_image_path"), base))
        video = _frames(path, name, "video_data", entry["video_data"])
        inputs.append(_frame_floats(path, name, video, "features", (dim,)))
        for field, key in _JSON_KEYS.items():
            fields[field].append(_frame_floats(path, name, video, key, FRAME_FIELDS[field]))
        frame_paths.extend(_json_path(frame.get("image_path"), base) for frame in video)
        counts.append(len(video))
    assert expected is not None  # read_json refuses a file without identities
    samples = int(sum(counts))
    return SampleColumns(
        identity_index=np.repeat(np.arange(len(names), dtype=np.int32), counts),
        input_features=np.concatenate(inputs),
        fields={
            **{field: np.concatenate(values) for field, values in fields.items()},
            "det_score": np.full(samples, np.nan, np.float32),  # not in the JSON format
        },
        image_path=pa.array(frame_paths, pa.string()),
        identities=names,
        target_features=np.stack(targets),
        face_image_path=pa.array(face_paths, pa.string()),
        model=expected[0],
    )


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


def _json_model(path: Path, name: str, entry: dict[str, Any]) -> tuple[str, int]:
    """(dinov2_model, feature_dim) of one identity, checked against each other."""
    model, dim = entry.get("dinov2_model"), entry.get("feature_dim")
    features = entry["face_features"]
    length = len(features) if isinstance(features, list) else None
    if not isinstance(dim, int) or isinstance(dim, bool):
        dim = length
    if dim is None or dim != length:
        raise InputError(
            f"{path}: identity {name!r} has feature_dim {entry.get('feature_dim')!r} but "
            f"face_features holds {length} values.\nHint: the file was edited or truncated; "
            "regenerate it with `featstore export-json`."
        )
    if not isinstance(model, str):
        model = f"unknown {dim}-dim model"
    elif model in MODEL_SPECS and MODEL_SPECS[model].embed_dim != dim:
        raise InputError(
            f"{path}: identity {name!r} says dinov2_model {model} (whose features have "
            f"{MODEL_SPECS[model].embed_dim} dims) but feature_dim {dim}.\nHint: the features and "
            "the model name disagree; regenerate the file with `featstore export-json`."
        )
    return model, dim


def _frame_floats(
    path: Path, name: str, video: list[Any], key: str, shape: tuple[int, ...]
) -> NDArray[np.float32]:
    try:
        return _floats(path, name, key, [frame[key] for frame in video], (len(video), *shape))
    except (KeyError, TypeError):
        index = next(
            i for i, frame in enumerate(video) if not isinstance(frame, dict) or key not in frame
        )
        raise InputError(
            f"{path}: identity {name!r}, video_data[{index}] has no {key!r}.\n"
            "Hint: regenerate the file with `featstore export-json`."
        ) from None
    except InputError:
        for index, frame in enumerate(video):
            _floats(path, name, f"video_data[{index}].{key}", frame[key], shape)
        raise


def _floats(
    path: Path, name: str, field: str, value: object, shape: tuple[int, ...]
) -> NDArray[np.float32]:
    try:
        array = np.asarray(value, dtype=np.float32)
    except (ValueError, TypeError):
        array = None
    if array is None or array.shape != shape:
        found = "values of uneven length" if array is None else f"shape {list(array.shape)}"
        raise InputError(
            f"{path}: identity {name!r}, {field}: expected shape {list(shape)}, found {found}."
            "\nHint: one file must hold features of one model; regenerate it with "
            "`featstore export-json`."
        )
    return array


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
