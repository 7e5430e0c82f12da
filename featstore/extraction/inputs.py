"""The input tree (docs/formats.md): frontal images, video frames, what changed since."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from featstore.errors import InputError
from featstore.extraction.images import IMAGE_EXTENSIONS


@dataclass(frozen=True)
class IdentityInputs:
    """One identity's files: its frontal image (if any) and its frames, ordered by name."""

    identity: str
    face: Path | None
    frames: tuple[Path, ...]
    has_video_dir: bool

    def fingerprint(self) -> str:
        """A digest of every input file's name, size and mtime: a changed file changes it.

        Names, not full paths, so moving the whole dataset does not force a redo (a
        changed base dir is caught separately, by the model's provenance).

        Files that cannot be stat'ed contribute a marker, so they are retried next run.
        """
        entries: list[object] = [self.identity, self.has_video_dir]
        for path in ([self.face] if self.face else []) + list(self.frames):
            try:
                st = path.stat()
                entries.append([path.name, st.st_size, st.st_mtime_ns])
            except OSError as exc:
                entries.append([path.name, "unstat", type(exc).__name__])
        payload = json.dumps(entries, ensure_ascii=False).encode("utf-8", "surrogateescape")
        return hashlib.sha256(payload).hexdigest()


@dataclass
class InputTree:
    """Everything found under the face and video folders."""

    identities: list[IdentityInputs]
    face_without_video: list[str] = field(default_factory=list)
    video_without_face: list[str] = field(default_factory=list)
    ambiguous_faces: list[str] = field(default_factory=list)  # several files, one stem
    ignored_files: int = 0  # files without an image extension

    @property
    def image_count(self) -> int:
        return sum((1 if i.face else 0) + len(i.frames) for i in self.identities)

    def shard(self, index: int, count: int) -> InputTree:
        """The identities of shard `index` of `count` (see `shard_of`), notes included."""
        check_shard(index, count)

        def mine(names: list[str]) -> list[str]:
            return [name for name in names if shard_of(name, count) == index]

        return InputTree(
            identities=[i for i in self.identities if shard_of(i.identity, count) == index],
            face_without_video=mine(self.face_without_video),
            video_without_face=mine(self.video_without_face),
            ambiguous_faces=mine(self.ambiguous_faces),
            ignored_files=self.ignored_files,
        )


def shard_of(identity: str, count: int) -> int:
    """The shard (0 .. count-1) of an identity: a stable hash of its name's UTF-8 bytes.

    BLAKE2b, not Python's `hash` (salted per process), so every process, host and
    featstore version splits a dataset the same way, whatever else is in it.
    """
    name = identity.encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.blake2b(name, digest_size=8).digest(), "big") % count


def check_shard(index: int, count: int) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InputError(f"--shard: the shard count must be a whole number >= 1, got {count!r}.")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise InputError(
            f"--shard {index}/{count}: the index must be 0 to {count - 1}.\n"
            f"Hint: shards are numbered from 0; for a SLURM array use --array=0-{count - 1} "
            "with --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT."
        )


def parse_shard(text: str) -> tuple[int, int]:
    """`"I/N"` as `(I, N)`, checked."""
    index, sep, count = text.partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit():
        raise InputError(f"--shard {text!r}: write it as I/N, e.g. 0/4 (shard 0 of 4).")
    check_shard(int(index), int(count))
    return int(index), int(count)


def _image_files(folder: Path) -> tuple[list[Path], int]:
    images, ignored = [], 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if not entry.is_file():
                continue
            if Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS:
                images.append(Path(entry.path))
            else:
                ignored += 1
    return sorted(images, key=lambda p: p.name), ignored


def _require_dir(path: Path, option: str) -> None:
    if not path.exists():
        raise InputError(f"{option} {path} does not exist.\nHint: check the path.")
    if not path.is_dir():
        raise InputError(f"{option} {path} is not a folder.")


def scan_inputs(face_dir: Path, video_dir: Path) -> InputTree:
    """Walk `<face_dir>/<identity>.<ext>` and `<video_dir>/<identity>/<frame>.<ext>`.

    The identity is the frontal image's file stem, byte for byte. A video folder with
    no frontal image still yields an identity (its frames get rows, never angles).
    """
    _require_dir(face_dir, "--face-dir")
    _require_dir(video_dir, "--video-dir")
    face_files, ignored = _image_files(face_dir)
    faces: dict[str, Path] = {}
    ambiguous: list[str] = []
    for path in face_files:  # sorted, so the first of `a.jpg`, `a.png` wins, reproducibly
        if path.stem in faces:
            ambiguous.append(path.stem)
        else:
            faces[path.stem] = path
    with os.scandir(video_dir) as entries:
        video_dirs = {e.name: Path(e.path) for e in entries if e.is_dir()}

    tree = InputTree(identities=[], ambiguous_faces=sorted(set(ambiguous)), ignored_files=ignored)
    for identity in sorted(faces.keys() | video_dirs.keys()):
        frames: list[Path] = []
        if identity in video_dirs:
            frames, skipped = _image_files(video_dirs[identity])
            tree.ignored_files += skipped
        elif identity in faces:
            tree.face_without_video.append(identity)
        if identity not in faces:
            tree.video_without_face.append(identity)
        tree.identities.append(
            IdentityInputs(
                identity=identity,
                face=faces.get(identity),
                frames=tuple(frames),
                has_video_dir=identity in video_dirs,
            )
        )
    return tree
