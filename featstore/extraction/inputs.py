"""The input tree (docs/formats.md): frontal images, video frames, and what changed since
last time."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from featstore.errors import InputError
from featstore.extraction.fingerprint import InputStat, stat_inputs
from featstore.extraction.images import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IdentityInputs:
    """One identity's files: its frontal image (if any) and its frames, ordered by name."""

    identity: str
    face: Path | None
    frames: tuple[Path, ...]
    has_video_dir: bool

    @property
    def paths(self) -> list[Path]:
        """The frontal image (if any), then the frames."""
        return ([self.face] if self.face else []) + list(self.frames)

    def stat(self) -> InputStat:
        """The listing-only parts of the identity's input fingerprint (one stat per file;
        `featstore.extraction.fingerprint` says what they hold and why)."""
        return stat_inputs(self.identity, self.has_video_dir, self.paths)


@dataclass
class InputTree:
    """Everything found under the face and video folders."""

    identities: list[IdentityInputs]
    face_without_video: list[str] = field(default_factory=list)
    video_without_face: list[str] = field(default_factory=list)
    ambiguous_faces: list[str] = field(default_factory=list)  # several files, one stem
    ignored_files: int = 0  # files without an image extension
    # Entries of --video-dir that are no identity folder: "name (why)", escaped names.
    skipped_entries: list[str] = field(default_factory=list)
    # Inputs that are not read, each "<path> (why)": other extensions, images directly in
    # the video folder, folders inside an identity's folder. Logged one by one (-v).
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # the folders look wrong

    @property
    def image_count(self) -> int:
        return sum((1 if i.face else 0) + len(i.frames) for i in self.identities)

    def first(self, limit: int) -> InputTree:
        """The first `limit` identities by name (to try a few before a long run)."""
        if limit < 1:
            raise InputError(f"limit must be at least 1 (CLI: --limit N), got {limit}.")
        kept = self.identities[:limit]
        names = {i.identity for i in kept}
        return InputTree(
            identities=kept,
            face_without_video=[n for n in self.face_without_video if n in names],
            video_without_face=[n for n in self.video_without_face if n in names],
            ambiguous_faces=[n for n in self.ambiguous_faces if n in names],
            ignored_files=self.ignored_files,
            skipped_entries=self.skipped_entries,
            skipped=self.skipped,
            warnings=self.warnings,
        )

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
            skipped_entries=self.skipped_entries,
            skipped=self.skipped,
            warnings=self.warnings,
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


def storable_name(name: str) -> str:
    """`name` as the store can hold it: valid UTF-8, undecodable bytes written as `\\xNN`.

    Python lists a file name that is not UTF-8 with each undecodable byte as a lone
    surrogate (PEP 383 "surrogateescape"); no string column can hold those. Each such byte
    becomes the four characters `\\xNN` (Python's "backslashreplace"), so the original
    bytes stay recoverable (`name.encode().decode("unicode_escape")` for names without a
    backslash of their own), and the name reads as what `ls -b` shows.
    """
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_utf8_name(name: str) -> bool:
    """Whether a name listed from the file system is valid UTF-8 (holds no escaped byte)."""
    return storable_name(name) == name


def _image_files(folder: Path) -> tuple[list[Path], int]:
    """The entries with an image extension, whatever they are, sorted by name.

    Type checks wait for decoding, which turns a folder, a FIFO, a device or a broken
    symlink named `x.jpg` into an `unreadable` row with its reason: nothing is dropped
    silently, and nothing here opens or follows more than `scandir` itself does.
    """
    images, ignored = [], 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS:
                images.append(Path(entry.path))
                continue
            try:
                regular = entry.is_file()
            except OSError:  # a symlink loop: not an image by its name either
                regular = True
            ignored += regular
    return sorted(images, key=lambda p: p.name), ignored


def _require_dir(path: Path, option: str) -> None:
    if not path.exists():
        raise InputError(f"{option} {path} does not exist.\nHint: check the path.")
    if not path.is_dir():
        raise InputError(f"{option} {path} is not a folder.")


def _video_dirs(video_dir: Path, skipped: list[str]) -> dict[str, Path]:
    """`<video_dir>/<identity>/` by identity; anything else there is noted in `skipped`."""
    found: dict[str, Path] = {}
    with os.scandir(video_dir) as entries:
        for entry in entries:
            try:
                is_dir, why = entry.is_dir(), "not a folder"
            except OSError as exc:
                is_dir, why = False, _link_problem(exc)
            if not is_dir and entry.is_symlink():
                try:
                    os.stat(entry.path)
                except OSError as exc:
                    why = _link_problem(exc)
            if is_dir:
                found[storable_name(entry.name)] = Path(entry.path)
            else:
                skipped.append(f"{storable_name(entry.name)} ({why})")
    return found


def _link_problem(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symbolic link loop"
    if exc.errno == errno.ENOENT:
        return "a dangling symbolic link"
    return exc.strerror or type(exc).__name__


def scan_inputs(face_dir: Path, video_dir: Path) -> InputTree:
    """Walk `<face_dir>/<identity>.<ext>` and `<video_dir>/<identity>/<frame>.<ext>`.

    The identity is the frontal image's file stem, byte for byte; a stem that is not
    UTF-8 is kept as `storable_name` writes it (and its images end `unreadable`, since
    no stored path could name them). A video folder with no frontal image still yields
    an identity (its frames get rows, never angles). Entries of the video folder that
    are no folder (files, broken symlinks) are counted and named in `skipped_entries`.
    """
    _require_dir(face_dir, "--face-dir")
    _require_dir(video_dir, "--video-dir")
    face_files, ignored = _image_files(face_dir)
    faces: dict[str, Path] = {}
    ambiguous: list[str] = []
    for path in face_files:  # sorted, so the first of `a.jpg`, `a.png` wins, reproducibly
        stem = storable_name(path.stem)
        if stem in faces:
            ambiguous.append(stem)
        else:
            faces[stem] = path
    skipped: list[str] = []
    video_dirs = _video_dirs(video_dir, skipped)

    tree = InputTree(
        identities=[],
        ambiguous_faces=sorted(set(ambiguous)),
        ignored_files=ignored,
        skipped_entries=sorted(skipped),
    )
    face_listing, video_listing = _list(face_dir), _list(video_dir)
    _skip(tree, face_listing.others + video_listing.others, _EXTENSIONS)
    _skip(tree, face_listing.folders, "a folder in --face-dir; frontal images are files there")
    _skip(tree, video_listing.images, "an image directly in --video-dir; frames go in "
          "<video-dir>/<identity>/")  # fmt: skip
    for identity in sorted(faces.keys() | video_dirs.keys()):
        frames: list[Path] = []
        if identity in video_dirs:
            try:
                frames, skipped_files = _image_files(video_dirs[identity])
            except OSError as exc:  # listed as a folder, gone or unreadable since
                tree.skipped_entries.append(f"{identity} ({exc.strerror or exc})")
            else:
                tree.ignored_files += skipped_files
                listing = _list(video_dirs[identity])
                _skip(tree, listing.others, _EXTENSIONS)
                _skip(tree, listing.folders, "a folder inside an identity's folder; not searched")
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
    tree.warnings = _check_folders(face_dir, video_dir, face_listing, video_listing, tree)
    for warning in tree.warnings:  # the summary prints them; a warning here said it twice
        log.info("%s", warning)
    return tree


@dataclass
class _Listing:
    """One folder's entries: images, other files, sub-folders."""

    images: list[Path]
    others: list[Path]
    folders: list[Path]


def _list(folder: Path) -> _Listing:
    listing = _Listing([], [], [])
    try:
        entries = list(os.scandir(folder))
    except OSError:  # gone or unreadable since it was listed: the scan says so
        return listing
    for entry in entries:
        is_image = Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS
        try:
            kind = "folder" if entry.is_dir() else "file" if entry.is_file() else "other"
        except OSError:  # a symlink loop, a vanished entry: decoding reports it
            kind = "other"
        if is_image:  # whatever it is, named like an image it gets a row (see _image_files)
            if kind == "file":
                listing.images.append(Path(entry.path))
        elif kind == "folder":
            listing.folders.append(Path(entry.path))
        elif kind == "file":
            listing.others.append(Path(entry.path))
    for paths in (listing.images, listing.others, listing.folders):
        paths.sort(key=lambda p: p.name)
    return listing


def _skip(tree: InputTree, paths: list[Path], why: str) -> None:
    for path in paths:
        log.info("skipped %s (%s)", path, why)
        tree.skipped.append(f"{path} ({why})")


_EXTENSIONS = "not " + "/".join(sorted(IMAGE_EXTENSIONS))


def _check_folders(
    face_dir: Path, video_dir: Path, faces: _Listing, videos: _Listing, tree: InputTree
) -> list[str]:
    """Why the folders look wrong (swapped, or one level off), if they do."""
    warnings = []
    if not faces.images and faces.folders:
        swapped = " (swapped with --video-dir?)" if videos.images else ""
        warnings.append(
            f"--face-dir {face_dir} holds no image but {len(faces.folders)} folders"
            f"{swapped}: frontal images go directly in it as <identity>.<ext>; if it is the "
            "parent of the face folder, give the face folder itself."
        )
    if not videos.folders and videos.images:
        warnings.append(
            f"--video-dir {video_dir} holds {len(videos.images)} images but no identity "
            "folder: frames go in <video-dir>/<identity>/<frame>.<ext> (is it the face folder?)."
        )
    paired = sum(1 for i in tree.identities if i.face is not None and i.has_video_dir)
    if tree.identities and not paired and not warnings:
        warnings.append(
            f"no identity has both a frontal image in {face_dir} and a folder in {video_dir}, "
            "so none can be valid: check that the names match (the image's stem is the "
            "folder's name) and that the two folders belong together."
        )
    if not tree.identities and not warnings:
        warnings.append(
            f"no identity found: {face_dir} has no image file and {video_dir} no folder."
        )
    return warnings
