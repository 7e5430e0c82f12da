"""`featstore report`: one self-contained HTML file to look at a store before training.

A thin adapter over `featstore.report.build.write_report`; `featstore_cli.main` registers it.
"""

from __future__ import annotations

from pathlib import Path

import click
from featstore_cli.common import library_errors
from featstore_cli.options import (
    model_option,
    out_option,
    store_option,
    version_option,
    where_option,
)

from featstore.errors import printable_message


@click.command()
@store_option()
@out_option("HTML file to write (its folder must exist); replaced atomically.")
@model_option(
    "Model to report on [default: the only model, or the only DINOv2 model beside ArcFace; "
    "the others are compared with it]."
)
@where_option(
    "Keep only the frames matching this SQL predicate over the columns of the frames "
    "view, as export-json --where, e.g. 'abs(avg_angle) < 30'; the overview still counts "
    "the whole store."
)
@version_option
@library_errors
def report(
    store: str, out: Path, model: str | None, where: str | None, version: int | None
) -> None:
    """Write an HTML report of the store: counts, distributions, a gallery, model agreement."""
    from featstore.report.build import write_report

    summary = write_report(store, out=out, model=model, where=where, version=version)
    click.echo(printable_message(summary.format()))
