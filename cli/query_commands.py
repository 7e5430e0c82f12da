"""`featstore query` and `featstore info`: read the store, never write it."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click
from featstore_cli.common import library_errors

_STORE = click.option(
    "--store",
    required=True,
    metavar="PATH|URI",
    help="The store folder, or its URI on object storage (s3://bucket/prefix).",
)


def _write_result(table: object, fmt: str, output: Path | None) -> None:
    """Write an Arrow table as csv / json (records) / parquet, atomically when to a file."""
    import duckdb

    if output is None and fmt == "parquet":
        raise click.UsageError("--format parquet needs --output FILE.")
    folder = output.parent if output else Path(tempfile.gettempdir())
    if not folder.is_dir():
        raise click.ClickException(f"--output folder {folder} does not exist.")
    fd, tmp_name = tempfile.mkstemp(prefix=".featstore-query-", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with duckdb.connect() as con:
            con.register("result", table)
            options = {"csv": "FORMAT csv, HEADER true", "json": "FORMAT json, ARRAY true"}
            target = tmp.as_posix().replace("'", "''")
            con.execute(f"COPY result TO '{target}' ({options.get(fmt, 'FORMAT parquet')})")
        if output is None:
            sys.stdout.write(tmp.read_text("utf-8"))
        else:
            os.replace(tmp, output)
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


@click.command()
@_STORE
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
@click.option("--model", help="Restrict every view to this model.")
@click.option("--max-rows", default=40, show_default=True, help="Rows shown by --format table.")
@library_errors
def query(
    store: str, sql: str, fmt: str, output: Path | None, model: str | None, max_rows: int
) -> None:
    """Run SQL (DuckDB) over the views: images, faces, frames, identities, valid_frames (and
    identity_consistency when the store has an ArcFace model)."""
    import duckdb

    from featstore.store.query import Store, run_query

    result = run_query(Store(store), sql, model=model)
    if fmt != "table":
        _write_result(result, fmt, output)
        return
    with duckdb.connect() as con:
        con.register("result", result)
        text = con.sql("SELECT * FROM result").__str__() if result.num_columns else "(no result)\n"
    if result.num_rows > max_rows:
        text += (
            f"({result.num_rows} rows; DuckDB shows the first and last; use --format csv for all)\n"
        )
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, "utf-8")


@click.command()
@_STORE
@library_errors
def info(store: str) -> None:
    """Models, identities, images by status and disk size (without reading features)."""
    from featstore.store.query import Store, store_info

    found = store_info(Store(store))
    click.echo(f"store: {found.path}  ({found.disk_bytes / 2**20:.1f} MiB on disk)")
    if not found.models:
        click.echo("  empty: no model has been extracted or imported yet")
    for m in found.models:
        p = m.provenance
        click.echo(
            f"model {m.name}: dim {m.dim}, {found.identities.get(m.name, 0)} identities, "
            f"{found.valid_identities.get(m.name, 0)} valid"
        )
        counts = found.images_by_status.get(m.name, {})
        click.echo("  images: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"))
        detector = p.get("detector") or {}
        click.echo(
            f"  provenance: precision {p.get('precision')}, angles {p.get('angle_definition')}, "
            f"weights sha256 {str(p.get('weights_sha256'))[:12]}, "
            f"detector {detector.get('pack')}/{detector.get('model_file')} "
            f"det_size {detector.get('det_size')} det_thresh {detector.get('det_thresh')}, "
            f"featstore {p.get('featstore_version')}"
        )
