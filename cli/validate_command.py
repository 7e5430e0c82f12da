"""`featstore validate`: check a trainer JSON and list what is wrong with it."""

from __future__ import annotations

import json
from pathlib import Path

import click
from featstore_cli.common import library_errors

from featstore.errors import printable_message


@click.command()
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON, for machines.")
@click.option(
    "--no-check-paths", is_flag=True, help="Do not check that the image paths name files."
)
@click.option(
    "--max-problems",
    default=100,
    show_default=True,
    type=click.IntRange(0),
    help="Problems listed (0: all); the count always covers all of them.",
)
@click.option(
    "--base-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Resolve relative image paths against this folder (default: the file's folder).",
)
@click.option("--strict", is_flag=True, help="Warnings count as problems (exit 1).")
@library_errors
def validate(
    file: Path,
    as_json: bool,
    no_check_paths: bool,
    max_problems: int,
    base_dir: Path | None,
    strict: bool,
) -> None:
    """Check a trainer JSON file (new, old or 3D format), or face000's npy training
    directory (a folder: its eight files); exit 1 when anything is wrong.

    Answers the seed's troubleshooting list: dims vs dinov2_model (Q1), paths that do not
    resolve (Q2), missing fields, malformed JSON and unknown formats (Q3). Each problem is
    one line: identity, field, what was expected, what was found, and its code. Paths of
    a new-format file that all resolve against one other folder are a warning (exit 0;
    --strict makes it a failure); check them there with --base-dir.
    """
    from featstore.trainer_json.validate import validate_json

    if file.is_dir():
        _validate_npy_dir(file, as_json, max_problems)
        return
    report = validate_json(
        file, check_paths=not no_check_paths, max_problems=max_problems or None, base_dir=base_dir
    )
    failed = not report.ok or (strict and bool(report.warnings))
    if not as_json:
        for warning in report.warnings:
            click.echo(f"warning: {warning.format()}")
            if warning.message:
                click.echo(f"  Hint: {warning.message}")
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    elif report.ok:
        warned = f" ({len(report.warnings)} warning{'s' if len(report.warnings) > 1 else ''})"
        verdict = "FAILED (--strict)" if failed else "OK"
        line = f"{verdict}: {file}: {report.describe()}{warned if report.warnings else ''}"
        click.echo(printable_message(line))
    else:
        for problem in report.problems:
            click.echo(printable_message(problem.format()))
        hidden = report.problem_count - len(report.problems)
        if hidden:
            click.echo(f"... and {hidden} more (--max-problems 0 lists all)")
        for group, hint in report.hints.items():
            click.echo(f"Hint ({group}): {hint}")
        count = f"{report.problem_count} problem{'s' if report.problem_count != 1 else ''}"
        click.echo(printable_message(f"{count} in {file} ({report.describe()})"))
    if failed:
        raise SystemExit(1)


def _validate_npy_dir(folder: Path, as_json: bool, max_problems: int) -> None:
    """The npy training directory's report: problems (exit 1), notes (exit 0)."""
    from featstore.npy_dir.validate import validate_npy_dir

    report = validate_npy_dir(folder)
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        for note in report.notes:
            click.echo(printable_message(f"note: {note.format()}"))
        shown = report.problems[:max_problems] if max_problems else report.problems
        for problem in shown:
            click.echo(printable_message(problem.format()))
        if len(shown) < len(report.problems):
            click.echo(f"... and {len(report.problems) - len(shown)} more (--max-problems 0)")
        count = len(report.problems)
        verdict = "OK:" if report.ok else f"{count} problem{'s' if count != 1 else ''} in"
        click.echo(printable_message(f"{verdict} {folder}: {report.describe()}"))
    if not report.ok:
        raise SystemExit(1)
