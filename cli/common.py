"""What every command shares: turning featstore's errors into clean exits."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from featstore.errors import FeatstoreError, Interrupted, printable_message

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
        except Interrupted as exc:  # extraction: says how many identities it saved
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise click.ClickException("interrupted") from None

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def usage_errors() -> Iterator[None]:
    """Options the library refuses as given (a combination that cannot work) are a usage
    error: click's exit code 2 with the usage line, as for a bad flag."""
    try:
        yield
    except FeatstoreError as exc:
        raise click.UsageError(printable_message(str(exc))) from exc
