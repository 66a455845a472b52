"""Template injection: Jinja syntax and HTML in feeds, the editor's intro and subject, and
subscriber names show as text, never run, in every place they are shown.

A hostile JSON feed on disk is fetched, built into an issue, edited through the editor's pages
(intro, subject, a section label), sent through the file backend, and read back: the HTML and
text parts of each message, the editor's preview, the issue's web version, the archive and its
Atom feed. Renderer-level checks with hand-made issues are in tests/render/test_issue.py
(test_article_text_is_escaped_and_never_run_as_template_code,
test_intro_is_markdown_sanitised_and_never_a_template, test_hostile_titles_render_inert_and_tidy).
"""

from __future__ import annotations

import asyncio
import email
import json
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from html.parser import HTMLParser
from pathlib import Path

from fastapi.testclient import TestClient

from digest.collect import fetch_sources
from digest.config import parse_settings
from digest.deliver.backends import backend_from_url
from digest.pipeline import build_issue, send_issue
from digest.store import Store
from digest.web.serving import public_app
from subscribers import service
from tests.security.site import ENVIRON
from tests.web.public_site import Clock, Site, csrf_token, plain_text, post_subscribe, take_mail
from tests.web.test_editor import log_in, seen_stamp

NOW = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
# Each would leave a trace if evaluated: the product, the loop's repeats, a Python class.
JINJA = "{{ 4096*4093 }} {% for x in range(3) %}LOOP{% endfor %} {{ ''.__class__.__mro__ }}"
EVALUATED = ("16764928", "LOOPLOOP", "<class", "&lt;class")
HTML = '<script>alert(1)</script><img src=x onerror="alert(2)"><a href="javascript:alert(3)">x</a>'
CONFIG = """
version = 1
name = "Example News"
base_url = "https://news.example.org"

[mail]
url = "file://outbox"
sender = "Example News <news@example.org>"

[[sources]]
name = "hostile"
url = "feed.json"

[[digests]]
name = "weekly"
title = "The Weekly"
"""


def hostile_feed() -> dict[str, object]:
    items = [
        {
            "id": f"item-{n}",
            "url": f"https://example.org/story-{n}",
            "title": f"Story {n}\x00 {JINJA} {HTML}",
            "content_html": f"<p>Words about story {n}, {JINJA}.</p>{HTML}" * 3,
            "date_published": (NOW - timedelta(hours=n + 1)).isoformat(),
            "authors": [{"name": f"Author {JINJA}"}],
        }
        for n in range(4)
    ]
    return {
        "version": "https://jsonfeed.org/version/1.1",
        "title": f"Feed {JINJA}",
        "items": items,
    }


class _Active(HTMLParser):
    """Collects what a browser or mail client would run: script elements, on* handlers and
    javascript: links."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.found.append("<script>")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"{tag} {name}=")
            if name in ("href", "src", "action") and (value or "").strip().lower().startswith(
                "javascript:"
            ):
                self.found.append(f"{tag} {name}={value}")


def assert_inert(html: str, where: str) -> None:
    """Nothing was evaluated as a template and nothing in the HTML would run."""
    for trace in EVALUATED:
        assert trace not in html, f"{where}: {trace!r} shows a template ran"
    parser = _Active()
    parser.feed(html)
    assert parser.found == [], f"{where}: {parser.found}"


def test_hostile_feed_intro_and_subject_stay_text_everywhere_they_are_shown(
    tmp_path: Path,
) -> None:
    """Attack: a feed's titles, authors and content, and an editor's intro, subject and
    section label, hold Jinja ({{ … }}, {% … %}, attribute walks to Python classes) and
    HTML (script, event handlers, javascript: links), hoping the renderer runs the template
    or a reader's client runs the script. Everywhere the issue is shown the Jinja is
    literal text and no script, handler or javascript: link exists."""
    (tmp_path / "feed.json").write_text(json.dumps(hostile_feed()), encoding="utf-8")
    path = tmp_path / "digest.toml"
    path.write_text(CONFIG, encoding="utf-8")
    settings = parse_settings(CONFIG, path, {"DIGEST_SECRET_KEY": "template-test-secret"})
    store = Store.open(settings.database_url)
    with store.transaction() as connection:
        service.ensure_list(connection, "weekly", now=NOW)
        service.add_subscriber(
            connection, "ann@example.org", list_name="weekly", consent="fair", now=NOW
        )
    clock = Clock(NOW)
    report = asyncio.run(fetch_sources(settings, store, clock=clock))
    assert (report.stored, report.failed) == (4, ()), report
    issue, _created = build_issue(
        settings.digest("weekly"), store, now=NOW, sources=settings.sources
    )
    assert issue.id is not None and issue.article_count == 4
    app = public_app(settings, store, clock=clock, environ=ENVIRON)
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        assert log_in(client).status_code == 303
        page_url = f"/editor/issues/{issue.id}"
        label = issue.sections[0].label
        for fields in (
            {
                "action": "intro",
                "intro": f"Hello\x00 {JINJA}\n\n{HTML}\n\n[x](javascript:alert(4))",
            },
            {"action": "subject", "subject": f"Week {JINJA} <script>alert(5)</script>"},
            {"action": "rename", "section": label, "label": f"Label {JINJA} {HTML}"},
        ):
            page = client.get(page_url).text
            hidden = {"csrf_token": csrf_token(page), "seen": seen_stamp(page)}
            answer = client.post(f"{page_url}/edit", data={**hidden, **fields})
            assert answer.status_code == 303, answer.text
        preview = client.get(f"{page_url}/email")
        assert preview.status_code == 200
        assert_inert(preview.text, "editor preview")
        assert_inert(client.get(page_url).text, "editor page")

        sent = asyncio.run(
            send_issue(settings, store, issue.id, backend_from_url(settings.mail_url), clock=clock)
        )
        assert sent.sent == 1

        [eml] = sorted((tmp_path / "outbox").glob("*.eml"))
        message = email.message_from_bytes(eml.read_bytes(), policy=default)
        assert isinstance(message, EmailMessage)
        html_part = message.get_body(preferencelist=("html",))
        assert html_part is not None
        html, text = html_part.get_content(), plain_text(message)
        assert_inert(html, "email html")
        assert "{{ 4096*4093 }}" in html and "{{ 4096*4093 }}" in text
        assert "{{ 4096*4093 }}" in str(message["Subject"])
        for trace in EVALUATED:
            assert trace not in text and trace not in str(message["Subject"]), trace

        web = client.get(f"/issues/{issue.id}")
        assert web.status_code == 200
        assert_inert(web.text, "web version")
        assert "{{ 4096*4093 }}" in web.text
        archive = client.get("/archive").text
        assert f'href="issues/{issue.id}"' in archive and "{{ 4096*4093 }}" in archive
        assert_inert(archive, "archive")
        feed = client.get("/archive.atom").text
        assert f"/issues/{issue.id}" in feed and "{{ 4096*4093 }}" in feed
        for trace in EVALUATED:
            assert trace not in feed, f"archive feed: {trace}"
        assert "<script" not in feed
    store.engine.dispose()


def test_a_hostile_name_is_text_in_the_notices(site: Site) -> None:
    """Attack: subscribe with a name that is Jinja and HTML. The confirmation email greets
    with it as text: not evaluated, escaped in the HTML part."""
    name = f"Mallory\x00 {JINJA} {HTML}"  # the NUL: PostgreSQL stores no text holding one
    answer = post_subscribe(site.client, "mallory@example.org", name=name, topic=["Science"])
    assert answer.status_code == 200
    assert_inert(answer.text, "check-your-inbox page")
    [confirm] = take_mail(site.outbox)
    html_part = confirm.get_body(preferencelist=("html",))
    assert html_part is not None
    html, text = html_part.get_content(), plain_text(confirm)
    assert_inert(html, "confirm html")
    for trace in EVALUATED:
        assert trace not in text, trace
    assert "Mallory {{ 4096*4093 }}" in text
    assert "Mallory {{ 4096*4093 }}" in html
    assert "&lt;script&gt;" in html
