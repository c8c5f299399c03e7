"""The CLI's one error path. Exit codes: 0 done, 1 the command failed (the platform refused or could not
do it), 2 bad usage (an option, argument or input the caller must fix), 130 interrupted."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn, TypeVar

import typer

from docvl.errors import DocvlError, InvalidInput

T = TypeVar("T")
FAILED = 1
USAGE = 2


def say_error(exc: DocvlError, prefix: str = "") -> None:
    typer.echo(f"error ({exc.code}): {prefix}{exc.message}", err=True)


def fail(exc: DocvlError) -> NoReturn:
    """Say what went wrong on stderr and exit: 2 when the input was invalid, 1 otherwise."""
    say_error(exc)
    raise typer.Exit(USAGE if isinstance(exc, InvalidInput) else FAILED)


def usage(message: str) -> NoReturn:
    """Bad usage found by the command itself: say so and exit 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(USAGE)


def call(fn: Callable[[], T]) -> T:
    """`fn()`, with a docvl error ending the command through `fail`."""
    try:
        return fn()
    except DocvlError as exc:
        fail(exc)
