"""What every `digest` command shares: the console, one-line errors, JSON output, the
settings and store of the invocation, and the progress bar."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
)

from digest.config import Settings, load_settings
from digest.errors import DigestError
from digest.store import Store
from subscribers.service import SubscriberError

console = Console(stderr=True)
log = logging.getLogger("digest")

F = TypeVar("F", bound=Callable[..., Any])

JsonFlag = Annotated[bool, typer.Option("--json", help="Write JSON to stdout.")]


def utc_now() -> datetime:
    return datetime.now(UTC)


def handled(command: F) -> F:
    """Turn the errors a user can act on into one red line and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (DigestError, SubscriberError) as error:
            console.print(
                f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def emit_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def settings_from(ctx: typer.Context) -> Settings:
    return load_settings(ctx.obj, os.environ)


def open_store(settings: Settings) -> Store:
    return Store.open(settings.database_url)


def progress_bar(*, disable: bool, percent: bool = False) -> Progress:
    """A bar on the console: counted items ("12/40"), or with `percent` a share (bytes read)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn() if percent else MofNCompleteColumn(),
        console=console,
        transient=True,
        disable=disable,
    )
