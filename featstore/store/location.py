"""Where a store lives: a local folder, or any filesystem pyarrow supports (s3://, gs://, ...).

    resolve_store("store/")                       a local folder (pathlib, os.replace)
    resolve_store("s3://bucket/prefix")           pyarrow's S3 client
    resolve_store("s3://b/p?endpoint_override=127.0.0.1:9000&scheme=http")

Credentials, one way for both of the store's S3 clients (pyarrow's for files, delta-rs'
own for the tables): the usual environment variables (`AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`, ...), which
both read, or the URI's user info `s3://KEY:SECRET@bucket/prefix` (percent-encoded),
which pyarrow reads and `delta_target` hands to delta-rs. Credentials as query options
(`?secret_key=`) are refused: pyarrow does not know them. Endpoint options
(`?endpoint_override=host:port&scheme=http&region=...`) are pyarrow's, translated for
delta-rs. Messages and `repr` show `StoreLocation.display`: the URI without user info or
secret query values.

Writes are whole-or-nothing on both: locally a file is written under a temporary name
(`<name>.tmp-<host>-<pid>-<random>`) and renamed; on object storage an object is uploaded
in one piece (a PUT, or a multipart upload that completes only at the end), so readers
never see a torn object and there is nothing to rename.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from featstore.errors import StoreError
from featstore.store.paths import write_atomic

if TYPE_CHECKING:
    import pyarrow.fs as pafs

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SECRET_WORDS = ("key", "secret", "token", "password", "credential", "signature")
_CREDENTIAL_OPTIONS = ("access_key", "secret_key", "session_token")
_CREDENTIALS_HINT = (
    "Give S3 credentials in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
    "AWS_SESSION_TOKEN; endpoint AWS_ENDPOINT_URL, region AWS_REGION) or in the URI as "
    "s3://KEY:SECRET@bucket/prefix (percent-encode '/', ':' and '@'); the endpoint may also "
    "be given as ?endpoint_override=host:port&scheme=http."
)


def is_uri(store: str | os.PathLike[str]) -> bool:
    """Whether `store` names a filesystem by scheme (`s3://...`) rather than a local path."""
    return isinstance(store, str) and bool(_URI.match(store)) and not store.startswith("file://")


def scrub_uri(uri: str) -> str:
    """`uri` without user info and with the values of secret-looking query options hidden."""
    parts = urlsplit(uri)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = urlencode(
        [
            (k, "***" if any(w in k.lower() for w in _SECRET_WORDS) else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*:/",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _secrets(uri: str) -> list[str]:
    parts = urlsplit(uri)
    found = [v for k, v in parse_qsl(parts.query) if any(w in k.lower() for w in _SECRET_WORDS)]
    if "@" in parts.netloc:
        found += [s for s in parts.netloc.rsplit("@", 1)[0].split(":") if s]
    found += [
        os.environ[k] for k in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN") if k in os.environ
    ]
    return [s for s in found if len(s) >= 4]


@dataclass(frozen=True)
class StoreLocation:
    """A store's root on a filesystem, with the few operations the store needs.

    Keys are `/`-separated paths relative to the root (`model=m/_provenance.json`).
    """

    fs: pafs.FileSystem
    root: str  # the root inside `fs`, without a trailing slash
    display: str  # for messages and summaries: never holds a secret
    local: Path | None  # the folder, when the store is on the local filesystem
    # As given; may hold secrets, so never shown, nor in repr (pickled to Ray workers).
    uri: str = field(repr=False)

    def __str__(self) -> str:
        return self.display

    def path(self, key: str = "") -> str:
        """The path of `key` inside `fs`."""
        return f"{self.root}/{key}" if key else self.root

    def describe(self, key: str = "") -> str:
        """`key` as users should see it (a local path, or the scrubbed URI plus the key)."""
        if self.local is not None:
            return str(self.local / key) if key else str(self.local)
        return f"{self.display.split('?', 1)[0].rstrip('/')}/{key}" if key else self.display

    def scrub(self, text: str) -> str:
        """`text` (an error message) with this location's secrets replaced by `***`."""
        text = text.replace(self.uri, self.display)
        for secret in _secrets(self.uri):
            text = text.replace(secret, "***")
        return text

    def read_bytes(self, key: str) -> bytes:
        """The content of `key`; FileNotFoundError when absent."""
        if self.local is not None:
            return (self.local / key).read_bytes()
        with self.fs.open_input_stream(self.path(key)) as f:
            return bytes(f.read())

    def is_file(self, key: str) -> bool:
        if self.local is not None:
            return (self.local / key).is_file()
        import pyarrow.fs as pafs

        return bool(self.fs.get_file_info(self.path(key)).type == pafs.FileType.File)

    def modified_ns(self, key: str) -> int | None:
        """When `key` was last modified (the storage's clock, ns); None when absent."""
        if self.local is not None:
            try:
                return (self.local / key).stat().st_mtime_ns
            except FileNotFoundError:
                return None
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(self.path(key))
        if info.type != pafs.FileType.File or info.mtime_ns is None:
            return None
        return int(info.mtime_ns)

    def write_atomic(self, key: str, data: bytes | memoryview) -> None:
        """Write `key` whole or not at all (temporary + rename locally, one upload remotely)."""
        if self.local is not None:
            path = self.local / key
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data, sync=False)
            return
        # One write of the whole object: pyarrow completes the upload only at close.
        with self.fs.open_output_stream(self.path(key)) as f:
            f.write(data)

    def delete_file(self, key: str) -> None:
        if self.local is not None:
            (self.local / key).unlink(missing_ok=True)
        else:
            self.fs.delete_file(self.path(key))

    def children(self, key: str = "") -> list[str]:
        """The names of the entries directly under `key` (files and folders); [] if absent."""
        if self.local is not None:
            folder = self.local / key if key else self.local
            return sorted(os.listdir(folder)) if folder.is_dir() else []
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self.path(key), allow_not_found=True)
        return sorted(info.base_name for info in self.fs.get_file_info(selector))

    def list_files(self, key: str = "") -> list[tuple[str, int]]:
        """(path relative to `key`, size) of every file under `key`, recursively, sorted."""
        if self.local is not None:
            folder = self.local / key if key else self.local
            return sorted(
                (p.relative_to(folder).as_posix(), p.stat().st_size)
                for p in folder.rglob("*")
                if p.is_file()
            )
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self.path(key), recursive=True, allow_not_found=True)
        start = len(self.path(key)) + 1
        return sorted(
            (info.path[start:], int(info.size or 0))
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File
        )

    def delta_target(self, key: str) -> tuple[str, dict[str, str]]:
        """Where delta-rs finds the table at `key`: its URI and storage options.

        delta-rs reaches object storage through its own client (Rust object_store), which
        reads the same AWS_* variables; the endpoint options of a pyarrow-style URI
        (`?endpoint_override=host:port&scheme=http`) are translated for it.
        """
        if self.local is not None:
            folder = (self.local / key).absolute()
            if "%" in str(folder):
                raise StoreError(
                    f"store {self.local}: its path holds '%', which delta-rs decodes as an "
                    f"escape (it would read another folder).\nHint: rename the folder, or "
                    "reach it through a symlink whose path has no '%'."
                )
            return str(folder), {}
        parts = urlsplit(self.uri)
        options: dict[str, str] = {}
        query = dict(parse_qsl(parts.query))
        scheme = query.get("scheme", "https")
        if "endpoint_override" in query:
            options["AWS_ENDPOINT_URL"] = f"{scheme}://{query['endpoint_override']}"
        endpoint = options.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3") or ""
        endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL", "")
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
        if "region" in query:
            options["AWS_REGION"] = query["region"]
        if parts.username is not None:  # pyarrow's form: delta-rs takes them as options
            options["AWS_ACCESS_KEY_ID"] = unquote(parts.username)
            options["AWS_SECRET_ACCESS_KEY"] = unquote(parts.password or "")
        # The bucket alone: delta-rs would read `KEY:SECRET@bucket` as the bucket's name.
        netloc = parts.netloc.rsplit("@", 1)[-1]
        base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        return f"{base}/{key}", options

    def remove_tree(self, key: str) -> None:
        """Delete `key` and everything under it (no error when absent)."""
        if self.local is not None:
            shutil.rmtree(self.local / key, ignore_errors=True)
        else:
            self.fs.delete_dir_contents(self.path(key), missing_dir_ok=True)


_LOCAL_FS: pafs.FileSystem | None = None


def local_location(folder: str | os.PathLike[str]) -> StoreLocation:
    """A local folder as a location (no filesystem call)."""
    global _LOCAL_FS
    if _LOCAL_FS is None:
        import pyarrow.fs as pafs

        _LOCAL_FS = pafs.LocalFileSystem()
    path = Path(folder)
    return StoreLocation(_LOCAL_FS, path.absolute().as_posix(), str(path), path, str(path))


def resolve_store(store: str | os.PathLike[str] | StoreLocation) -> StoreLocation:
    """The location `store` names: a local path, a `file://` URI, or a pyarrow filesystem URI.

    Raises:
        StoreError: the URI's scheme or options are not usable (message scrubbed).
    """
    if isinstance(store, StoreLocation):
        return store
    if not is_uri(store):
        text = os.fspath(store)
        return local_location(text[len("file://") :] if text.startswith("file://") else text)
    assert isinstance(store, str)
    import pyarrow as pa
    import pyarrow.fs as pafs

    display = scrub_uri(store)
    secret_options = [k for k, _ in parse_qsl(urlsplit(store).query) if k in _CREDENTIAL_OPTIONS]
    if secret_options:
        raise StoreError(
            f"--store {display}: credentials as URI options ({', '.join(secret_options)}) "
            "reach neither pyarrow nor delta-rs.\nHint: " + _CREDENTIALS_HINT
        )
    try:
        fs, root = pafs.FileSystem.from_uri(store)
    except (pa.ArrowException, OSError, ValueError) as exc:
        message = str(exc)
        for secret in _secrets(store):
            message = message.replace(secret, "***")
        raise StoreError(
            f"cannot open --store {display}: {message}\nHint: stores live in local folders, "
            "s3://bucket/prefix, gs:// or hdfs://. " + _CREDENTIALS_HINT
        ) from exc
    if isinstance(fs, pafs.LocalFileSystem):
        return local_location(root)
    return StoreLocation(fs, root.rstrip("/"), display, None, store)


def require_local(store: str | os.PathLike[str], what: str) -> Path:
    """`store` as a local folder, or a clear error for commands that need one."""
    if is_uri(store):
        raise StoreError(
            f"{what} needs a local --store folder, not {scrub_uri(str(store))}.\n"
            "Hint: run it into a local folder, then copy the folder to object storage."
        )
    return Path(store)
