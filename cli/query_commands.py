"""`featstore query` and `featstore info`: read the store, never write it."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click
from featstore_cli.common import library_errors
from featstore_cli.options import model_option, store_option, version_option

from featstore.errors import plural, printable

if TYPE_CHECKING:
    from featstore.store.neighbors import StoredNeighbors


def _write_result(table: object, fmt: str, output: Path | None) -> None:
    """Write an Arrow table as csv / json (records) / parquet, atomically when to a file."""
    import duckdb

    if output is None and fmt == "parquet":
        raise click.UsageError("--format parquet needs --output FILE.")
    from featstore.store.paths import AtomicPath

    # To a file: built beside it and renamed (through a symlink; a FIFO or device is
    # written in place). To stdout: a private temporary, then printed.
    atomic = AtomicPath(output, f"featstore-query-{os.getpid()}") if output else None
    if atomic is None:
        fd, tmp_name = tempfile.mkstemp(prefix=".featstore-query-")
        os.close(fd)
        tmp = Path(tmp_name)
    else:
        tmp = atomic.tmp
    if not tmp.parent.is_dir():
        raise click.ClickException(f"--output folder {tmp.parent} does not exist.")
    try:
        if fmt == "parquet":
            # pyarrow, not DuckDB's COPY: DuckDB 2.0 writes FLOAT[D] columns with null rows
            # so that pyarrow rejects the file (duckdb issue 24731).
            import pyarrow.parquet as pq

            pq.write_table(table, tmp, compression="zstd")
        else:
            with duckdb.connect() as con:
                con.register("result", table)
                options = {"csv": "FORMAT csv, HEADER true", "json": "FORMAT json, ARRAY true"}
                target = tmp.as_posix().replace("'", "''")
                con.execute(f"COPY result TO '{target}' ({options[fmt]})")
        if atomic is None:
            sys.stdout.write(tmp.read_text("utf-8"))
        else:
            atomic.commit()
            assert output is not None
            _say_written(output, table)
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _say_written(output: Path, table: object) -> None:
    """On stderr, so stdout stays the data when it is piped."""
    rows = getattr(table, "num_rows", 0)
    click.echo(f"wrote {rows} row{'s' * (rows != 1)} to {output}", err=True)


def render_table(table: object, max_rows: int) -> str:
    """DuckDB's box rendering of `table`, at most `max_rows` rows (first and last)."""
    import duckdb

    if not getattr(table, "num_columns", 0):
        return "(no result)\n"
    buffer = io.StringIO()
    with duckdb.connect() as con, contextlib.redirect_stdout(buffer):
        con.register("result", table)
        con.sql("SELECT * FROM result").show(max_rows=max_rows)
    return buffer.getvalue()


@click.command()
@store_option()
@click.argument("sql")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "parquet"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here.")
@model_option("Restrict every view to this model.")
@click.option(
    "--max-rows",
    default=40,
    show_default=True,
    type=click.IntRange(1),
    help="Rows shown by --format table (the first and last ones).",
)
@version_option
@library_errors
def query(
    store: str,
    sql: str,
    fmt: str,
    output: Path | None,
    model: str | None,
    max_rows: int,
    version: int | None,
) -> None:
    """Run SQL (DuckDB) over the views: images, faces, frames, identities, valid_frames (and
    identity_consistency when the store has an ArcFace model)."""
    from featstore.store import Store
    from featstore.store.paths import enclosing_store

    inside = enclosing_store(output) if output is not None else None
    if inside is not None:
        raise click.UsageError(
            f"--output {output} is inside the store {inside}; write results outside it."
        )
    result = Store(store).sql(sql, model=model, version=version)
    if fmt != "table":
        _write_result(result, fmt, output)
        return
    text = render_table(result, max_rows)
    if result.num_rows > max_rows:
        text += f"({result.num_rows} rows; more with --max-rows N, all with --format csv)\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, "utf-8")
        _say_written(output, result)


@click.command()
@store_option()
@model_option("Only this model.")
@version_option
@library_errors
def info(store: str, model: str | None, version: int | None) -> None:
    """Models, identities, images by status and disk size (without reading features)."""
    from featstore.store import Store
    from featstore.store.format import stand_in_warning
    from featstore.store.query import store_info

    found = store_info(Store(store), model=model, version=version)

    def echo(line: str) -> None:  # one line each: names escaped (featstore.errors.printable)
        click.echo(printable(line))

    echo(f"store: {found.path}  ({found.disk_bytes / 2**20:.1f} MiB on disk)")
    if not found.models:
        echo("  empty: no model has been extracted or imported yet")
    for m in found.models:
        p = m.provenance
        echo(
            f"model {m.name}: dim {m.dim}, "
            f"{plural(found.identities.get(m.name, 0), 'identity')}, "
            f"{found.valid_identities.get(m.name, 0)} valid (table version {m.version})"
        )
        counts = found.images_by_status.get(m.name, {})
        echo("  images: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"))
        echo(f"  provenance: {_provenance_line(p)}")
        warning = stand_in_warning(p)
        if warning:
            echo(f"  !! {warning}")
        if m.name in found.neighbors:
            echo("  " + _neighbors_line(found.neighbors[m.name], m.version))


def _neighbors_line(n: StoredNeighbors, current: int) -> str:
    """The model's neighbors table: its version, and whether the model changed since."""
    key = n.settings.get("key", {})
    source = key.get("model_version")
    state = (
        "up to date"
        if source == current
        else f"stale: rerun `featstore neighbors` (model now at version {current})"
    )
    return (
        f"neighbors: table version {n.version}, from model table version {source} ({state}); "
        f"K {n.settings.get('report', {}).get('k', key.get('k'))}, threshold "
        f"{key.get('threshold')}, copy threshold {key.get('copy_threshold')}"
    )


def _provenance_line(p: dict[str, object]) -> str:
    """The settings a model's rows share; what an imported model does not record is left out."""
    detector = p.get("detector")
    detector = detector if isinstance(detector, dict) else {}
    parts = [
        ("precision", p.get("precision")),
        ("angles", p.get("angle_definition")),
        ("weights sha256", str(p["weights_sha256"])[:12] if p.get("weights_sha256") else None),
        ("detector", "/".join(str(detector[k]) for k in ("pack", "model_file") if detector.get(k))),
        ("det_size", detector.get("det_size")),
        ("det_thresh", detector.get("det_thresh")),
        ("source", p.get("source")),
        ("featstore", p.get("featstore_version")),
    ]
    return ", ".join(f"{name} {value}" for name, value in parts if value not in (None, ""))
