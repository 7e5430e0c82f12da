"""Output files (`--output`, `--out`): written whole then renamed, through a symlink to its
target (the link stays), in place into a FIFO or device (never replaced by a file), with
the mode the umask gives a new file."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from delta_checks import build_store
from featstore_cli.main import main

SQL = "SELECT identity, count(*) AS n FROM images GROUP BY ALL ORDER BY ALL"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("outputs") / "store"
    build_store(folder, 3, per_commit=3)
    return folder


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _query(store: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["query", "--store", str(store), SQL, *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(
    "command", [["query", "--format", "csv", "--output"], ["export-json", "--out"]]
)
def test_an_output_through_a_symlink_replaces_the_target_and_keeps_the_link(
    store: Path, tmp_path: Path, command: list[str]
) -> None:
    target = tmp_path / "real" / "result.out"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "link.out"
    link.symlink_to(target)
    args = [command[0], "--store", str(store), *([SQL] if command[0] == "query" else [])]
    result = CliRunner().invoke(main, [*args, *command[1:], str(link)])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert "id_00000" in target.read_text()
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.out"]  # no temporary


def test_an_output_into_a_fifo_is_written_in_place(store: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as pipe:
            received.append(pipe.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    _query(store, "--format", "csv", "--output", str(fifo))
    reader.join(timeout=30)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still the FIFO, not a file in its place
    assert received and received[0].startswith(b"identity,n\n"), received


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json"])
def test_a_new_output_file_gets_the_umask_s_mode(
    store: Path, tmp_path: Path, umask_022: None, fmt: str
) -> None:
    out = tmp_path / f"result.{fmt}"
    _query(store, "--format", fmt, "--output", str(out))
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    out.chmod(0o600)  # an existing file keeps its own mode
    _query(store, "--format", fmt, "--output", str(out))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
