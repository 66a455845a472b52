"""`digest subscribers …`: add, import, list, export and forget the people on the lists."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer
from rich.markup import escape
from rich.table import Table

from digest.cli_common import (
    JsonFlag,
    console,
    emit_json,
    handled,
    open_store,
    progress_bar,
    settings_from,
    utc_now,
)
from digest.config import Settings
from digest.errors import DigestError

if TYPE_CHECKING:
    from subscribers.csvimport import ImportReport, PendingConfirmation

subscribers_app = typer.Typer(help="Manage subscribers and lists.", no_args_is_help=True)


ListOption = Annotated[
    str | None, typer.Option("--list", help="List name (default: the first digest's).")
]


def _list_name(settings: Settings, name: str | None) -> str:
    return name or settings.digest(None).list_name


@subscribers_app.command("add")
@handled
def subscribers_add(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="Address to subscribe.")],
    list_name: ListOption = None,
    name: Annotated[str, typer.Option(help="The subscriber's name.")] = "",
    topics: Annotated[str, typer.Option(help="Topic names separated by ';' (default: all).")] = "",
    frequency: Annotated[
        str | None,
        typer.Option(help="each, daily, weekly or paused (default: weekly, or as it was)."),
    ] = None,
    consent: Annotated[
        str, typer.Option(help="How consent was given (kept in the log).")
    ] = "added by operator",
) -> None:
    """Subscribe one address to a list."""
    from subscribers.service import add_subscriber, ensure_list

    settings = settings_from(ctx)
    chosen_list = _list_name(settings, list_name)
    chosen_topics = [t.strip() for t in topics.split(";") if t.strip()]
    _check_topics(settings, chosen_list, chosen_topics)
    store = open_store(settings)
    now = utc_now()
    with store.transaction() as connection:
        ensure_list(connection, chosen_list, now=now)
        subscriber = add_subscriber(
            connection,
            email,
            list_name=chosen_list,
            name=name,
            topics=chosen_topics,
            frequency=frequency,
            consent=consent,
            now=now,
        )
    console.print(f"Subscribed {subscriber.email} to {chosen_list}")


def _known_topics(settings: Settings, list_name: str) -> list[str] | None:
    """Topic names the list's digests offer; None when no digest sends to that list."""
    names = [t.name for d in settings.digests if d.list_name == list_name for t in d.topics]
    return names if any(d.list_name == list_name for d in settings.digests) else None


def _check_topics(settings: Settings, list_name: str, topics: list[str]) -> None:
    known = _known_topics(settings, list_name)
    unknown = [t for t in topics if known is not None and t not in known]
    if unknown:
        raise DigestError(
            f"unknown topic {unknown[0]!r} for list {list_name} (known: {', '.join(known or [])})"
        )


@subscribers_app.command("import")
@handled
def subscribers_import(
    ctx: typer.Context,
    csv_file: Annotated[
        Path, typer.Argument(help="CSV with a header row: email and optionally name, topics...")
    ],
    list_name: ListOption = None,
    consent: Annotated[
        str | None,
        typer.Option(help="How these people agreed to be mailed; they are subscribed at once."),
    ] = None,
    double_opt_in: Annotated[
        bool,
        typer.Option(
            "--double-opt-in", help="Send each new person a confirmation email; pending till then."
        ),
    ] = False,
    column: Annotated[
        list[str] | None,
        typer.Option(help="FIELD=HEADER, e.g. email=E-Mail (email name topics cadence status)."),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Import subscribers from CSV; bad rows are reported and skipped, never fatal."""
    from subscribers.csvimport import import_csv
    from subscribers.csvrows import parse_column_option
    from subscribers.service import ensure_list

    _require_consent_choice(csv_file, consent, double_opt_in)
    columns = dict(parse_column_option(option) for option in column or [])
    settings = settings_from(ctx)
    if double_opt_in:
        settings.require_secret_key()  # before anything is written: the links need it
    chosen_list = _list_name(settings, list_name)
    store = open_store(settings)
    now = utc_now()
    with _open_csv(csv_file) as handle, progress_bar(disable=json_output, percent=True) as progress:
        task = progress.add_task(
            f"Importing {csv_file.name}", total=os.fstat(handle.fileno()).st_size
        )
        with store.transaction() as connection:
            ensure_list(connection, chosen_list, now=now)
            report = import_csv(
                connection,
                handle,
                list_name=chosen_list,
                consent=consent or "",
                double_opt_in=double_opt_in,
                columns=columns,
                topics_known=_known_topics(settings, chosen_list),
                now=now,
                on_batch=lambda _: progress.update(task, completed=handle.buffer.tell()),
            )
    unsent = ""
    sent = 0
    if report.pending:
        try:
            sent = _send_confirmations(settings, report.pending, now=now)
        except DigestError as error:
            unsent = str(error)
    _show_import(csv_file, report, sent, json_output=json_output)
    if unsent:
        raise DigestError(
            f"confirmation emails not sent ({unsent}); {len(report.pending)} people stay pending"
        )


def _require_consent_choice(csv_file: Path, consent: str | None, double_opt_in: bool) -> None:
    """Refuse, as bad usage, an import that does not say how these people agreed."""
    problem = ""
    if consent is None and not double_opt_in:
        problem = (
            "say how these people agreed to be mailed: --consent NOTE (subscribed now) "
            "or --double-opt-in (each confirms by email first)"
        )
    elif consent is not None and double_opt_in:
        problem = "--consent and --double-opt-in exclude each other: choose one"
    elif consent is not None and not consent.strip():
        problem = "--consent needs a note saying how and when these people agreed"
    if problem:
        console.print(f"[red]error:[/red] {escape(f'{csv_file}: {problem}')}", soft_wrap=True)
        raise typer.Exit(2)


@contextmanager
def _open_csv(path: Path) -> Iterator[TextIO]:
    """The file for streaming; bytes that are not UTF-8 reject their row, not the file."""
    try:
        handle = path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as error:
        raise DigestError(f"{path}: cannot read: {error.strerror or error}") from error
    with handle:
        yield handle


def _send_confirmations(
    settings: Settings, pending: Sequence[PendingConfirmation], *, now: datetime
) -> int:
    """Email each pending person the link that confirms their subscription."""
    from digest.notices import NoticeRecipient, send_confirmations

    recipients = [
        NoticeRecipient(p.subscriber_id, p.email, p.list_name, p.name, p.topics, p.cadence)
        for p in pending
    ]
    return send_confirmations(settings, recipients, now=now)


def _show_import(csv_file: Path, report: ImportReport, sent: int, *, json_output: bool) -> None:
    if json_output:
        emit_json({**report.to_json(), "confirmations_sent": sent})
        return
    for line, reason in report.rejected:
        console.print(f"[yellow]{escape(str(csv_file))}:{line}:[/yellow] {escape(reason)}")
    parts = [f"{report.imported} imported ({report.added} new to the list)"]
    if report.pending:
        parts.append(f"{len(report.pending)} pending, {sent} confirmation emails sent")
    parts += [
        f"{report.duplicates} duplicates",
        f"{report.suppressed} suppressed",
        f"{report.unsubscribed} unsubscribed",
        f"{len(report.rejected)} rejected",
    ]
    console.print(", ".join(parts))


@subscribers_app.command("list")
@handled
def subscribers_list(
    ctx: typer.Context, list_name: ListOption = None, json_output: JsonFlag = False
) -> None:
    """Show subscribers, their lists, topics and status."""
    from subscribers.service import list_subscribers

    settings = settings_from(ctx)
    with open_store(settings).transaction() as connection:
        rows = list_subscribers(connection, list_name)
    data = [
        {
            "email": r.email,
            "name": r.name,
            "list": r.list,
            "topics": list(r.topics),
            "status": r.status,
        }
        for r in rows
    ]
    if json_output:
        emit_json({"subscribers": data})
        return
    table = Table("email", "list", "topics", "status")
    for row in data:
        table.add_row(row["email"], row["list"], "; ".join(row["topics"]) or "all", row["status"])
    console.print(table)


AnyListOption = Annotated[
    str | None, typer.Option("--list", help="Only this list (default: every list).")
]


@subscribers_app.command("export")
@handled
def subscribers_export(
    ctx: typer.Context,
    list_name: AnyListOption = None,
    out: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Write subscriptions as CSV (email,name,list,topics,cadence,status), spreadsheet-safe."""
    from subscribers.csvexport import write_csv

    settings = settings_from(ctx)
    with open_store(settings).transaction() as connection:
        if out is None:
            write_csv(connection, sys.stdout, list_name=list_name)
            return
        try:
            with out.open("w", encoding="utf-8", newline="") as handle:
                written = write_csv(connection, handle, list_name=list_name)
        except OSError as error:
            raise DigestError(f"{out}: cannot write: {error.strerror or error}") from error
    console.print(f"Wrote {written} rows to {escape(str(out))}")


@subscribers_app.command("export-person")
@handled
def subscribers_export_person(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The person's address.")],
) -> None:
    """Print everything stored about one person as JSON (their right of access)."""
    from subscribers.service import export_person

    settings = settings_from(ctx)
    with open_store(settings).transaction() as connection:
        data = export_person(connection, email)
    if data is None:
        raise DigestError(f"{email}: nothing is stored about this address")
    emit_json(data)


@subscribers_app.command("forget")
@handled
def subscribers_forget(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The person's address.")],
    json_output: JsonFlag = False,
) -> None:
    """Erase a person and everything stored about them; the address stays on do-not-mail."""
    from subscribers.service import forget_person

    settings = settings_from(ctx)
    with open_store(settings).transaction() as connection:
        forgotten = forget_person(connection, email, now=utc_now())
    if not forgotten:
        raise DigestError(f"{email}: no such subscriber")
    if json_output:
        emit_json({"email": email, "forgotten": True})
        return
    console.print(f"Forgot {escape(email)}; the address stays on the do-not-mail list")


@subscribers_app.command("remove", hidden=True)
@handled
def subscribers_remove(
    ctx: typer.Context, email: Annotated[str, typer.Argument(help="Address to erase.")]
) -> None:
    """Erase a subscriber (the older name of `forget`)."""
    subscribers_forget(ctx, email, json_output=False)
