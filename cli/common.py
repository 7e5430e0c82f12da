"""What every command shares: turning featstore's errors into clean exits."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from featstore.errors import FeatstoreError, printable_message

F = TypeVar("F", bound=Callable[..., Any])


def library_errors(func: F) -> F:
    """Turn featstore's errors into clean exits (message, code 1, no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FeatstoreError as exc:
            # Names inside a message may hold escape sequences or newlines of their own.
            raise click.ClickException(printable_message(str(exc))) from exc
        except KeyboardInterrupt:
            raise click.ClickException(
                "interrupted; finished identities are saved, rerun the same command to resume"
            ) from None

    return wrapper  # type: ignore[return-value]


def table_version(func: F) -> F:
    """`--version N`: read that version of the model's table (time travel)."""
    return click.option(
        "--version",
        "version",
        type=click.IntRange(0),
        help="Read this version of the model's Delta table [default: the latest]; "
        "`featstore history` lists them. Needs --model when the store holds several.",
    )(func)
