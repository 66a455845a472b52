"""The `digest` command line: parse, call one pipeline function, print.

People read stderr (Rich); `--json` writes machine output to stdout and nothing else does.
Exit codes: 0 ok, 1 a handled error (one red line), 2 bad usage.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.logging import RichHandler
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
from digest.cli_subscribers import subscribers_app
from digest.config import Settings
from digest.errors import DigestError
from digest.store import Store

if TYPE_CHECKING:
    from digest.deliver.outbox import SendReport
    from digest.pipeline import PreviewFiles

app = typer.Typer(
    help="Many sources in, one clean topic digest out, to every inbox, exactly once.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(subscribers_app, name="subscribers")


@app.callback()
def configure(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="Path of digest.toml (default: $DIGEST_CONFIG or ./digest.toml)."
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, show_time=False)],
        force=True,
    )
    ctx.obj = config


# --- scaffolding ---------------------------------------------------------------------------


@app.command()
@handled
def init(
    folder: Annotated[
        Path, typer.Argument(help="Where to write digest.toml and templates/.")
    ] = Path("."),
) -> None:
    """Scaffold a commented digest.toml and editable templates in FOLDER."""
    from digest.scaffold import write_starter

    config = write_starter(folder)
    console.print(f"Wrote [bold]{config}[/bold] and {config.parent / 'templates'}/")
    console.print("Edit the sources and topics, set DIGEST_SECRET_KEY, then run `digest run`.")


@app.command()
@handled
def demo(
    folder: Annotated[Path, typer.Argument(help="Folder for the demo.")] = Path("digest-demo"),
    json_output: JsonFlag = False,
) -> None:
    """Run the whole pipeline on bundled sample sources: fetch, group, render, send to files."""
    from digest.demo import run_demo

    result = run_demo(folder, clock=utc_now, progress=None if json_output else console)
    if json_output:
        emit_json(result.to_json())
        return
    table = Table(title="digest demo", show_header=False, title_justify="left")
    table.add_row("sources", f"{result.sources} ({result.failed_sources} failed)")
    table.add_row("articles", f"{result.articles} found, {result.duplicates} duplicates dropped")
    table.add_row("topics", ", ".join(result.topics))
    table.add_row("recipients", f"{result.sent} sent, {result.skipped} with nothing to read")
    console.print(table)
    console.print(f"Preview: [bold]{result.preview}[/bold]")
    console.print(f"Sent messages (.eml): [bold]{result.outbox}[/bold]")


# --- ingest --------------------------------------------------------------------------------


@app.command()
@handled
def fetch(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option("--source", help="Fetch only this source.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Fetch every source now and store new articles."""
    from digest.collect import fetch_sources  # not via pipeline: grouping's imports are heavy

    settings = settings_from(ctx)
    store = open_store(settings)
    with progress_bar(disable=json_output) as progress:
        task = progress.add_task("fetching", total=None)
        report = asyncio.run(
            fetch_sources(
                settings,
                store,
                clock=utc_now,
                only=source,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        )
    if json_output:
        emit_json(
            {
                "found": report.found,
                "duplicates": report.duplicates,
                "stored": report.stored,
                "sources": [
                    {
                        "name": s.name,
                        "found": s.found,
                        "error": s.error,
                        "defect": s.defect,
                        "not_modified": s.not_modified,
                    }
                    for s in report.sources
                ],
            }
        )
        return
    table = Table("source", "articles", "status")
    for outcome in report.sources:
        status = (
            f"[red]{escape(outcome.error)}[/red]"
            if outcome.error
            else "not modified"
            if outcome.not_modified
            else f"[yellow]{escape(outcome.defect)}[/yellow]"
            if outcome.defect
            else "ok"
        )
        table.add_row(outcome.name, str(outcome.found), status)
    console.print(table)
    console.print(
        f"{report.found} articles, {report.duplicates} duplicates, {report.stored} new stored"
    )


@app.command()
@handled
def sources(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Each source's health: last success, consecutive failures, last error."""
    settings = settings_from(ctx)
    health = {h.name: h for h in open_store(settings).source_health()}
    rows = []
    for source in settings.sources:
        known = health.get(source.name)
        rows.append(
            {
                "name": source.name,
                "url": source.url,
                "last_success": known.last_success.isoformat()
                if known and known.last_success
                else None,
                "last_attempt": known.last_attempt.isoformat()
                if known and known.last_attempt
                else None,
                "failures": known.failures if known else 0,
                "last_error": known.last_error if known else "",
                "defect": known.defect if known else "",
                "articles": known.articles_seen if known else 0,
            }
        )
    if json_output:
        emit_json({"sources": rows})
        return
    table = Table("source", "last success", "failures", "articles", "last error")
    for row in rows:
        table.add_row(
            row["name"],
            row["last_success"] or "never",
            str(row["failures"]),
            str(row["articles"]),
            escape(row["last_error"] or row["defect"] or ""),
        )
    console.print(table)


@app.command()
@handled
def extract(
    location: Annotated[str, typer.Argument(help="A file path or an http(s) URL.")],
    json_output: JsonFlag = False,
) -> None:
    """Extract one document: a page or text file gives an article, a feed gives its items."""
    from digest.ingest.boilerplate import recurring_paragraphs, strip_boilerplate
    from digest.ingest.extract import article_to_json, extract_document, feed_to_json
    from digest.ingest.fetch import FetchLimits, fetch_location, make_client
    from digest.models import Article

    is_url = location.startswith(("http://", "https://"))
    target = location if is_url else str(Path(location).resolve())

    async def download() -> Any:
        limits = FetchLimits()
        async with make_client(limits) as client:
            return await fetch_location(client, target, limits=limits)

    fetched = asyncio.run(download())
    document = extract_document(
        fetched.data,
        location=fetched.final_url or target,
        source=_source_name(location),
        content_type=fetched.content_type,
    )
    if not isinstance(document, Article):  # a feed's items show what recurs among them
        info, items = document
        recurring = recurring_paragraphs(items)
        document = info, [strip_boilerplate(item, recurring) for item in items]
    data = article_to_json(document) if isinstance(document, Article) else feed_to_json(*document)
    if json_output:
        emit_json(data)
    elif isinstance(document, Article):
        console.print(f"[bold]{escape(document.title)}[/bold]")
        console.print(f"{document.published or 'no date'} · {escape(document.url)}")
        console.print(escape(document.text))
    else:
        info, items = document
        console.print(f"[bold]{escape(info.title)}[/bold] ({info.format}, {len(items)} items)")
        for item in items:
            console.print(f"- {escape(item.title)}  {escape(item.url)}")


def _source_name(location: str) -> str:
    from urllib.parse import urlsplit

    return (
        urlsplit(location).hostname or Path(location).name
        if "://" in location
        else Path(location).name
    )


@app.command()
@handled
def group(
    ctx: typer.Context,
    input_file: Annotated[
        Path, typer.Argument(help="JSON Lines: {id, title, text, ...} per line.")
    ],
    k: Annotated[
        int | None, typer.Option("--k", min=1, help="Force this many automatic sections.")
    ] = None,
    digest_name: Annotated[
        str | None, typer.Option("--digest", help="Use this digest's topics from digest.toml.")
    ] = None,
    grouping: Annotated[
        str | None,
        typer.Option("--grouping", help="tfidf or embeddings (default: the digest's, else tfidf)."),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Group arbitrary articles into topics."""
    from digest.embeddings import require_embedder
    from digest.topics import articles_from_jsonl, group_by_topic, group_to_json

    try:
        text = input_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DigestError(f"{input_file}: cannot read: {error}") from error
    try:
        articles = articles_from_jsonl(text)
    except DigestError as error:
        raise DigestError(f"{input_file}: {error}") from error
    digest = settings_from(ctx).digest(digest_name) if digest_name else None
    topics = digest.topic_rules() if digest else ()
    method = grouping or (digest.grouping if digest else "tfidf")
    if method not in ("tfidf", "embeddings"):
        raise DigestError(f"--grouping: {method!r} is not tfidf or embeddings")
    embed = require_embedder() if method == "embeddings" else None
    sections = group_by_topic(articles, topics, k=k, embed=embed)
    if json_output:
        emit_json(group_to_json(sections))
        return
    for section in sections:
        console.print(f"[bold]{escape(section.label)}[/bold] ({len(section.articles)})")
        for article in section.articles:
            console.print(f"  {escape(article.title)}")


# --- issues ---------------------------------------------------------------------------------


def _issue_json(issue: Any, created: bool) -> dict[str, Any]:
    return {
        "issue_id": issue.id,
        "digest": issue.digest,
        "period": issue.period_key,
        "created": created,
        "articles": issue.article_count,
        "sections": [
            {"label": s.label, "article_ids": [a.id for a in s.articles]} for s in issue.sections
        ],
    }


@app.command()
@handled
def build(
    ctx: typer.Context,
    digest_name: Annotated[str | None, typer.Option("--digest", help="Which digest.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Assemble this period's draft issue from the stored articles."""
    from digest.errors import NothingNew
    from digest.pipeline import build_issue

    settings = settings_from(ctx)
    digest = settings.digest(digest_name)
    try:
        issue, created = build_issue(
            digest, open_store(settings), now=utc_now(), sources=settings.sources
        )
    except NothingNew as nothing:  # not a failure: cron runs this every period
        if json_output:
            emit_json(
                {"issue_id": None, "digest": digest.name, "created": False, "note": str(nothing)}
            )
        else:
            console.print(str(nothing))
        return
    if json_output:
        emit_json(_issue_json(issue, created))
        return
    verb = "Built" if created else "This period already has"
    console.print(f"{verb} issue [bold]{issue.id}[/bold] ({issue.digest}, {issue.period_key}):")
    for section in issue.sections:
        console.print(f"  {escape(section.label)}: {len(section.articles)} articles")


def _issue_id(store: Store, issue: int | None) -> int:
    found = issue if issue is not None else store.latest_issue_id()
    if found is None:
        raise DigestError("no issue yet: run `digest build` first")
    return found


@app.command()
@handled
def preview(
    ctx: typer.Context,
    issue: Annotated[int | None, typer.Argument(help="Issue id (default: the newest).")] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the .html, .txt, .eml and web version.")
    ] = Path("preview"),
    topics: Annotated[
        str, typer.Option("--topics", help="Preview as a subscriber of these topics (a;b).")
    ] = "",
    notice: Annotated[
        str,
        typer.Option(
            "--notice",
            help="Instead of an issue: the confirm, welcome or preferences-changed email.",
        ),
    ] = "",
    digest_name: Annotated[
        str | None, typer.Option("--digest", help="With --notice: whose list (default: first).")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Render an issue to files, exactly as a subscriber gets it (or a notice, with --notice)."""
    from digest.pipeline import preview_issue, preview_notice

    settings = settings_from(ctx)
    if notice:
        files = preview_notice(settings, notice, out, now=utc_now(), digest_name=digest_name)
        _report_preview(files, {"notice": notice}, json_output=json_output)
        return
    store = open_store(settings)
    issue_id = _issue_id(store, issue)
    loaded = store.load_issue(issue_id)
    if loaded is None:
        raise DigestError(f"issue {issue_id}: no such issue")
    chosen = [t.strip() for t in topics.split(";") if t.strip()]
    files = preview_issue(settings, loaded, out, now=utc_now(), topics=chosen)
    _report_preview(files, {"issue_id": issue_id}, json_output=json_output)


def _report_preview(files: PreviewFiles, what: dict[str, object], *, json_output: bool) -> None:
    if json_output:
        emit_json(
            {
                **what,
                "html": str(files.html),
                "text": str(files.text),
                "eml": str(files.eml),
                **({"web": str(files.web)} if files.web else {}),
                "size_bytes": files.size_bytes,
                "warnings": list(files.warnings),
            }
        )
        return
    for warning in files.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    console.print(f"Preview ({files.size_bytes / 1024:.0f} KiB): [bold]{files.html}[/bold]")
    console.print(f"Plain text: {files.text}\nAs an email: {files.eml}")
    if files.web:
        console.print(f"Web version (served at /issues/N once sent): {files.web}")


@app.command()
@handled
def send(
    ctx: typer.Context,
    issue: Annotated[int, typer.Argument(help="Issue id.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count and render; send nothing.")
    ] = False,
    retry_unknown: Annotated[
        bool, typer.Option("--retry-unknown", help="Send again to rows whose outcome is unknown.")
    ] = False,
    workers: Annotated[
        bool | None,
        typer.Option(
            "--workers/--here",
            help=(
                "Hand the batches to `digest worker` processes (broker: $DIGEST_BROKER_URL), "
                "or send from this process. Default: as digest.toml's \\[mail] workers says."
            ),
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Deliver an issue to its list (resumable; nobody gets it twice)."""
    from digest.pipeline import dry_run_issue

    settings = settings_from(ctx)
    store = open_store(settings)
    if dry_run:
        plan = dry_run_issue(settings, store, issue)
        if json_output:
            emit_json(plan)
        else:
            console.print(
                f"Issue {issue} would go to {plan['recipients']} subscribers in "
                f"{plan['variants']} variants ({plan['skipped']} have nothing to read)."
            )
        return
    if settings.file.mail.workers if workers is None else workers:
        report = _send_with_workers(settings, store, issue, retry_unknown, json_output)
    else:
        report = _send_here(settings, store, issue, retry_unknown, json_output)
    if json_output:
        emit_json(report.to_json())
    else:
        console.print(
            f"Issue {issue}: {report.sent} sent, {report.failed} failed, "
            f"{report.unknown} unknown, {report.queued} still queued"
        )
    if report.paused:
        raise DigestError(f"issue {issue}: sending paused: {report.paused}")
    if report.queued:
        raise DigestError(
            f"issue {issue}: {report.queued} messages not sent yet ({report.last_error}); "
            f"run `digest send {issue}` again to resume"
        )


def _send_with_workers(
    settings: Settings, store: Store, issue: int, retry_unknown: bool, json_output: bool
) -> SendReport:
    from digest.deliver.workers import broker_from_env, send_with_workers

    broker = broker_from_env(os.environ)
    with progress_bar(disable=json_output) as progress:
        task = progress.add_task("sending (workers)", total=None)
        return send_with_workers(
            settings,
            store,
            issue,
            broker,
            clock=utc_now,
            retry_unknown=retry_unknown,
            on_progress=lambda done: progress.update(task, completed=done),
        )


def _send_here(
    settings: Settings, store: Store, issue: int, retry_unknown: bool, json_output: bool
) -> SendReport:
    from digest.deliver.backends import backend_from_url
    from digest.pipeline import send_issue

    backend = backend_from_url(settings.mail_url)
    with progress_bar(disable=json_output) as progress:
        task = progress.add_task("sending", total=None)
        return asyncio.run(
            send_issue(
                settings,
                store,
                issue,
                backend,
                clock=utc_now,
                retry_unknown=retry_unknown,
                on_progress=lambda done: progress.update(task, completed=done),
            )
        )


@app.command()
@handled
def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", min=1, help="Batches sent at once (default: CPU count)."),
    ] = None,
) -> None:
    """Run a delivery worker: send the batches `digest send --workers` puts on the broker
    ($DIGEST_BROKER_URL). Runs until stopped; any number of workers share a send."""
    from digest.deliver.workers import broker_from_env, run_worker

    run_worker(settings_from(ctx), broker_from_env(os.environ), concurrency=concurrency)


@app.command()
@handled
def status(
    ctx: typer.Context,
    issue: Annotated[int | None, typer.Argument(help="Issue id (default: the newest).")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Outbox counts of an issue (queued, sent, failed, unknown) and its provider events."""
    store = open_store(settings_from(ctx))
    issue_id = _issue_id(store, issue)
    counts = store.outbox_counts(issue_id)
    data = {"issue_id": issue_id, "status": store.issue_status(issue_id), **counts}
    events = store.issue_event_counts(issue_id)
    if json_output:
        emit_json({**data, "events": events})
        return
    console.print(", ".join(f"{key}: {value}" for key, value in data.items()))
    console.print("events: " + ", ".join(f"{key}: {value}" for key, value in events.items()))


@app.command()
@handled
def run(
    ctx: typer.Context,
    digest_name: Annotated[str | None, typer.Option("--digest", help="Which digest.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Once, for cron: fetch; build each digest's issue for its latest schedule slot and send
    it (auto-approve, inside send_window, not later than late_after); send approved issues due."""
    from digest.deliver.backends import backend_from_url
    from digest.runs import describe_run, run_scheduled

    settings = settings_from(ctx)
    result = asyncio.run(
        run_scheduled(
            settings,
            open_store(settings),
            backend_from_url(settings.mail_url),
            digest_name=digest_name,
            clock=utc_now,
        )
    )
    if json_output:
        emit_json(result.to_json())
        return
    console.print(result.summary().splitlines()[0])  # the fetch line
    for digest_run in result.digests:
        console.print(describe_run(digest_run), highlight=False)


@app.command()
@handled
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    no_scheduler: Annotated[
        bool,
        typer.Option(
            "--no-scheduler", help="Web only: for extra web processes beside one that schedules."
        ),
    ] = False,
) -> None:
    """Serve the public pages: subscribe, confirm, preferences, unsubscribe, issues' web pages;
    and run the scheduler (fetch every source, build and send each digest at its times)."""
    import uvicorn

    from digest.web.serving import public_app

    settings = settings_from(ctx)
    store = open_store(settings)
    web = public_app(settings, store)
    if no_scheduler:
        uvicorn.run(web, host=host, port=port, log_level="warning")
        return
    from digest.schedule import start_scheduler, stop_scheduler

    scheduler = start_scheduler(settings, store)
    try:
        uvicorn.run(web, host=host, port=port, log_level="warning")
    finally:
        stop_scheduler(scheduler)


def main() -> None:
    app()
