"""The editor's pages: login, sessions and CSRF, and each edit as stored and as rendered.

The app is built as `digest serve` builds it (public_app) on a SQLite file, with the editor's
password in its environment; the client speaks https so the Secure cookies travel.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from httpx import Response

from digest.config import Settings, parse_settings
from digest.models import Article, Issue, Section
from digest.store import Store
from digest.tables import editor_sessions
from digest.web.ratelimit import RateLimit
from digest.web.serving import public_app
from tests.web.public_site import Clock, csrf_token

PASSWORD = "correct horse battery staple"
SECRET = "editor-test-secret"
START = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
CONFIG = """
version = 1
name = "Example News"
base_url = "https://news.example.org"

[mail]
url = "file://outbox"
sender = "Example News <news@example.org>"

[[digests]]
name = "weekly"
title = "The Weekly"
cadence = "weekly"
timezone = "Europe/Berlin"
topics = [{ name = "Science" }, { name = "Sport" }]
"""
# (section, article ids) of the issue every test starts from.
LAYOUT = (
    ("Science", ("s1", "s2", "s3")),
    ("Sport", ("p1", "p2")),
    ("Quantum things", ("q1",)),
)


@dataclass
class EditorSite:
    client: TestClient
    store: Store
    settings: Settings
    clock: Clock
    outbox: Path
    issue_id: int

    def issue(self) -> Issue:
        issue = self.store.load_issue(self.issue_id)
        assert issue is not None
        return issue

    def layout(self) -> list[tuple[str, tuple[str, ...]]]:
        return [(s.label, tuple(a.id for a in s.articles)) for s in self.issue().sections]

    def page(self, path: str = "") -> Response:
        answer = self.client.get(f"/editor/issues/{self.issue_id}{path}")
        assert answer.status_code == 200, answer.text
        return answer

    def form_fields(self) -> dict[str, str]:
        """The hidden fields every form of a freshly opened issue page carries."""
        page = self.page().text
        return {"csrf_token": csrf_token(page), "seen": seen_stamp(page)}

    def post(
        self, form: str, hidden: dict[str, str] | None = None, **fields: str | list[str]
    ) -> Response:
        """POST one of the issue page's forms ('edit', 'test', 'approve', 'cancel'), with the
        hidden fields of a page opened now, or of the page `hidden` came from."""
        return self.client.post(
            f"/editor/issues/{self.issue_id}/{form}",
            data={**(hidden or self.form_fields()), **fields},
        )

    def edit(self, **fields: str) -> Response:
        answer = self.post("edit", **fields)
        assert answer.status_code == 303, answer.text
        return answer

    def status(self) -> str:
        return self.store.issue_status(self.issue_id)


def seen_stamp(page: str) -> str:
    found = re.search(r'name="seen" value="([^"]+)"', page)
    assert found, "the page has no issue stamp"
    return found.group(1)


def article(article_id: str) -> Article:
    return Article(
        id=article_id,
        url=f"https://example.org/{article_id}",
        title=f"Story {article_id.upper()}",
        text="Some words about it. " * 20,
        source="Example Wire",
        published=START - timedelta(hours=1),
    )


def save_issue(store: Store, key: str = "2025-W10") -> int:
    articles = [article(a) for _label, ids in LAYOUT for a in ids]
    store.save_articles(articles, now=START)
    by_id = {a.id: a for a in articles}
    sections = tuple(Section(label, tuple(by_id[a] for a in ids)) for label, ids in LAYOUT)
    issue, _created = store.save_issue(
        Issue(digest="weekly", period_key=key, title="The Weekly", created=START, sections=sections)
    )
    assert issue.id is not None
    return issue.id


def build(tmp_path: Path, environ: dict[str, str], rate_limit: RateLimit | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / "digest.toml"
    path.write_text(CONFIG, encoding="utf-8")
    settings = parse_settings(CONFIG, path, {"DIGEST_SECRET_KEY": SECRET})
    store = Store.open(settings.database_url)
    clock = Clock(START)
    app = public_app(settings, store, clock=clock, environ=environ, rate_limit=rate_limit)
    return settings, store, clock, app


@pytest.fixture
def editor(tmp_path: Path) -> Iterator[EditorSite]:
    """Logged in as the editor, one draft issue stored."""
    settings, store, clock, app = build(tmp_path, {"DIGEST_EDITOR_PASSWORD": PASSWORD})
    issue_id = save_issue(store)
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        log_in(client)
        yield EditorSite(client, store, settings, clock, tmp_path / "outbox", issue_id)
    store.engine.dispose()


def log_in(client: TestClient, password: str = PASSWORD) -> Response:
    token = csrf_token(client.get("/editor/login").text)
    return client.post(
        "/editor/login", data={"csrf_token": token, "password": password, "next": "/editor/"}
    )


# --- login, sessions, CSRF -------------------------------------------------------------------


def test_editor_pages_do_not_exist_without_a_password(tmp_path: Path) -> None:
    _settings, store, _clock, app = build(tmp_path, {})
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        assert client.get("/editor/").status_code == 404
        assert client.get("/editor/login").status_code == 404
        assert client.post("/editor/login", data={"password": ""}).status_code == 404
    store.engine.dispose()


def test_pages_redirect_to_login_and_back_after_it(tmp_path: Path) -> None:
    _settings, store, _clock, app = build(tmp_path, {"DIGEST_EDITOR_PASSWORD": PASSWORD})
    issue_id = save_issue(store)
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        answer = client.get(f"/editor/issues/{issue_id}")
        assert answer.status_code == 303
        assert answer.headers["location"] == f"/editor/login?next=%2Feditor%2Fissues%2F{issue_id}"
        login_page = client.get(answer.headers["location"])
        assert f'name="next" value="/editor/issues/{issue_id}"' in login_page.text
        token = csrf_token(login_page.text)
        done = client.post(
            "/editor/login",
            data={"csrf_token": token, "password": PASSWORD, "next": f"/editor/issues/{issue_id}"},
        )
        assert done.status_code == 303
        assert done.headers["location"] == f"/editor/issues/{issue_id}"
        assert client.get(f"/editor/issues/{issue_id}").status_code == 200
    store.engine.dispose()


def test_login_never_sends_the_editor_to_another_site(tmp_path: Path) -> None:
    _settings, store, _clock, app = build(tmp_path, {"DIGEST_EDITOR_PASSWORD": PASSWORD})
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        for target in ("https://evil.example/", "//evil.example/editor/", "/editor//evil"):
            # Each login starts a new session, and the login form's token is tied to the last.
            token = csrf_token(client.get("/editor/login").text)
            answer = client.post(
                "/editor/login", data={"csrf_token": token, "password": PASSWORD, "next": target}
            )
            assert answer.headers["location"] == "/editor/"
    store.engine.dispose()


def test_a_wrong_password_is_refused_and_sets_no_session(tmp_path: Path) -> None:
    _settings, store, _clock, app = build(tmp_path, {"DIGEST_EDITOR_PASSWORD": PASSWORD})
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        answer = log_in(client, "correct horse battery")
        assert answer.status_code == 401
        assert "That password is not right." in answer.text
        assert "digest_editor" not in client.cookies
        assert client.get("/editor/").status_code == 303
    store.engine.dispose()


def test_the_session_cookie_is_httponly_lax_secure_and_scoped_to_the_editor(
    tmp_path: Path,
) -> None:
    _settings, store, _clock, app = build(tmp_path, {"DIGEST_EDITOR_PASSWORD": PASSWORD})
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        answer = log_in(client)
        assert answer.status_code == 303
        cookie = next(
            c for c in answer.headers.get_list("set-cookie") if c.startswith("digest_editor=")
        )
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"httponly", "secure", "samesite", "path", "max-age"} <= attributes
        assert "SameSite=lax" in cookie or "samesite=lax" in cookie.lower()
        assert "Path=/editor" in cookie
        assert PASSWORD not in cookie
    store.engine.dispose()


def test_login_without_its_csrf_token_is_refused(tmp_path: Path) -> None:
    _settings, store, _clock, app = build(tmp_path, {"DIGEST_EDITOR_PASSWORD": PASSWORD})
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        client.get("/editor/login")
        answer = client.post("/editor/login", data={"password": PASSWORD})
        assert answer.status_code == 403
        assert client.get("/editor/").status_code == 303
    store.engine.dispose()


def test_login_attempts_are_rate_limited_even_with_the_right_password(tmp_path: Path) -> None:
    _settings, store, clock, app = build(tmp_path, {"DIGEST_EDITOR_PASSWORD": PASSWORD})
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        for _ in range(5):
            assert log_in(client, "guess").status_code == 401
        held = log_in(client)
        assert held.status_code == 429
        assert held.headers["retry-after"] == "60"
        assert "digest_editor" not in client.cookies
        clock.advance(minutes=1)
        assert log_in(client).status_code == 303
    store.engine.dispose()


def test_a_session_expires_after_twelve_hours(editor: EditorSite) -> None:
    assert editor.client.get("/editor/").status_code == 200
    editor.clock.advance(hours=11, minutes=59)
    assert editor.client.get("/editor/").status_code == 200
    editor.clock.advance(minutes=2)
    assert editor.client.get("/editor/").status_code == 303


def test_a_forged_session_cookie_is_not_a_login(editor: EditorSite) -> None:
    cookie = editor.client.cookies["digest_editor"]
    session_id, signature = cookie.split(".", 1)
    forged = ("B" if session_id[0] == "A" else "A") + session_id[1:]
    editor.client.cookies.clear()
    editor.client.cookies.set("digest_editor", f"{forged}.{signature}", path="/editor")
    assert editor.client.get("/editor/").status_code == 303


def test_the_database_holds_only_a_hash_of_the_session_id(editor: EditorSite) -> None:
    session_id = editor.client.cookies["digest_editor"].split(".", 1)[0]
    with editor.store.engine.connect() as connection:
        stored = connection.execute(sa.select(editor_sessions.c.id_hash)).scalars().all()
    assert stored == [hashlib.sha256(session_id.encode("ascii")).hexdigest()]


def test_changing_the_password_ends_every_session(editor: EditorSite, tmp_path: Path) -> None:
    # The same database, restarted with another password.
    _settings, store, _clock, app = build(tmp_path, {"DIGEST_EDITOR_PASSWORD": "a new password"})
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as other:
        other.cookies.set("digest_editor", editor.client.cookies["digest_editor"], path="/editor")
        assert other.get("/editor/").status_code == 303
    store.engine.dispose()


def log_out(client: TestClient, **fields: str) -> Response:
    token = csrf_token(client.get("/editor/").text)
    return client.post("/editor/logout", data={"csrf_token": token, **fields})


def test_logging_out_ends_the_session(editor: EditorSite) -> None:
    answer = log_out(editor.client)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/editor/login"
    assert editor.client.get("/editor/").status_code == 303


def test_a_copy_of_the_session_cookie_stops_working_at_logout(editor: EditorSite) -> None:
    copied = editor.client.cookies["digest_editor"]
    token = csrf_token(editor.page().text)
    assert log_out(editor.client).status_code == 303
    editor.client.cookies.set("digest_editor", copied, path="/editor")
    assert editor.client.get("/editor/").headers["location"] == "/editor/login?next=%2Feditor%2F"
    assert editor.client.get(f"/editor/issues/{editor.issue_id}").status_code == 303
    answer = editor.client.post(
        f"/editor/issues/{editor.issue_id}/edit",
        data={"csrf_token": token, "action": "drop", "article": "s1"},
    )
    assert answer.status_code == 401
    assert editor.layout()[0] == ("Science", ("s1", "s2", "s3"))


def test_logging_out_ends_only_that_browsers_session(editor: EditorSite) -> None:
    app = editor.client.app
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as other:
        assert log_in(other).status_code == 303
        assert log_out(editor.client).status_code == 303
        assert other.get("/editor/").status_code == 200


def test_logging_out_everywhere_ends_every_session(editor: EditorSite) -> None:
    app = editor.client.app
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as other:
        assert log_in(other).status_code == 303
        assert "Log out everywhere" in other.get("/editor/").text
        assert log_out(other, everywhere="yes").status_code == 303
        assert other.get("/editor/").status_code == 303
    assert editor.client.get("/editor/").status_code == 303


def test_logging_in_again_ends_the_browsers_previous_session(editor: EditorSite) -> None:
    before = editor.client.cookies["digest_editor"]
    assert log_in(editor.client).status_code == 303
    assert editor.client.get("/editor/").status_code == 200
    with TestClient(editor.client.app, base_url="https://testserver") as other:
        other.cookies.set("digest_editor", before, path="/editor")
        assert other.get("/editor/", follow_redirects=False).status_code == 303


def test_a_csrf_token_from_another_session_is_refused(editor: EditorSite) -> None:
    first = editor.form_fields()
    assert log_in(editor.client).status_code == 303  # a second session in the same browser
    answer = editor.post("edit", first, action="drop", article="s1")
    assert answer.status_code == 403
    assert editor.layout()[0] == ("Science", ("s1", "s2", "s3"))
    assert editor.post("edit", action="drop", article="s1").status_code == 303


def test_a_csrf_token_from_a_public_page_is_refused(editor: EditorSite) -> None:
    public = csrf_token(editor.client.get("/subscribe").text)
    hidden = {**editor.form_fields(), "csrf_token": public}
    answer = editor.post("edit", hidden, action="drop", article="s1")
    assert answer.status_code == 403
    assert editor.layout()[0] == ("Science", ("s1", "s2", "s3"))


def test_a_post_without_a_session_changes_nothing(editor: EditorSite) -> None:
    token = csrf_token(editor.page().text)
    csrf_cookie = editor.client.cookies["digest_csrf"]
    editor.client.cookies.clear()
    editor.client.cookies.set("digest_csrf", csrf_cookie)
    answer = editor.client.post(
        f"/editor/issues/{editor.issue_id}/edit",
        data={"csrf_token": token, "action": "drop", "article": "s1"},
    )
    assert answer.status_code == 401
    assert editor.layout()[0] == ("Science", ("s1", "s2", "s3"))


@pytest.mark.parametrize("action", ["edit", "test", "approve", "cancel"])
def test_a_post_without_the_csrf_token_changes_nothing(editor: EditorSite, action: str) -> None:
    answer = editor.client.post(
        f"/editor/issues/{editor.issue_id}/{action}",
        data={"action": "drop", "article": "s1", "addresses": "me@example.org"},
    )
    assert answer.status_code == 403
    assert editor.layout()[0] == ("Science", ("s1", "s2", "s3"))
    assert editor.status() == "draft"
    assert not editor.outbox.exists() or not list(editor.outbox.iterdir())


def test_editor_pages_frame_only_their_own_previews_and_run_no_script(editor: EditorSite) -> None:
    policy = editor.page().headers["content-security-policy"]
    assert "frame-src 'self'" in policy
    assert "script-src" not in policy and "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    email = editor.page("/email").headers["content-security-policy"]
    assert email.startswith("sandbox ") and "allow-scripts" not in email
    assert "frame-ancestors 'self'" in email


# --- the issues list ----------------------------------------------------------------------------


def test_the_issue_list_shows_each_issue_with_its_status_and_counts(editor: EditorSite) -> None:
    second = save_issue(editor.store, key="2025-W11")
    editor.store.cancel_issue(second, now=START)
    page = editor.client.get("/editor/").text
    row = re.search(rf'<tr id="issue-{editor.issue_id}">(.*?)</tr>', page, re.S)
    assert row is not None
    assert "status-draft" in row.group(1)
    assert '<td class="number">6</td>' in row.group(1)
    other = re.search(rf'<tr id="issue-{second}">(.*?)</tr>', page, re.S)
    assert other is not None and "status-cancelled" in other.group(1)


# --- edits ----------------------------------------------------------------------------------


def test_dropping_an_item_removes_it_from_the_issue_and_the_email(editor: EditorSite) -> None:
    answer = editor.edit(action="drop", article="s2")
    assert answer.headers["location"].startswith(f"/editor/issues/{editor.issue_id}?done=drop")
    assert editor.layout()[0] == ("Science", ("s1", "s3"))
    assert "Story S2" not in editor.page("/email").text
    assert "Item dropped." in editor.page("?done=drop").text


def test_dropping_the_last_item_of_a_section_removes_the_section(editor: EditorSite) -> None:
    editor.edit(action="drop", article="q1")
    assert [label for label, _ in editor.layout()] == ["Science", "Sport"]


def test_pinning_puts_an_item_first_in_its_section_and_keeps_it_there(editor: EditorSite) -> None:
    editor.edit(action="pin", article="s3")
    assert editor.layout()[0] == ("Science", ("s3", "s1", "s2"))
    assert editor.issue().pinned == ("s3",)
    editor.edit(action="down", article="s1")  # the unpinned move among themselves
    assert editor.layout()[0] == ("Science", ("s3", "s2", "s1"))
    editor.edit(action="up", article="s2")
    assert editor.layout()[0] == ("Science", ("s3", "s2", "s1"))
    editor.edit(action="unpin", article="s3")
    assert editor.issue().pinned == ()


def test_moving_up_and_down_reorders_the_email(editor: EditorSite) -> None:
    editor.edit(action="down", article="s1")
    assert editor.layout()[0] == ("Science", ("s2", "s1", "s3"))
    editor.edit(action="up", article="s3")
    assert editor.layout()[0] == ("Science", ("s2", "s3", "s1"))
    html = editor.page("/email").text
    assert html.index("Story S2") < html.index("Story S3") < html.index("Story S1")


def test_an_item_moves_to_another_section_or_a_new_one(editor: EditorSite) -> None:
    editor.edit(action="move", article="s1", to="Sport", new_section="")
    assert editor.layout()[:2] == [("Science", ("s2", "s3")), ("Sport", ("p1", "p2", "s1"))]
    editor.edit(action="move", article="p1", to="Sport", new_section="Editor's picks")
    assert editor.layout()[-1] == ("Editor's picks", ("p1",))
    assert "Editor&#39;s picks" in editor.page("/email").text


def test_an_automatic_section_can_be_renamed(editor: EditorSite) -> None:
    editor.edit(action="rename", section="Quantum things", label="  Quantum   computing ")
    assert editor.layout()[-1] == ("Quantum computing", ("q1",))
    assert "Quantum computing" in editor.page("/email").text


def test_a_topic_section_cannot_be_renamed(editor: EditorSite) -> None:
    answer = editor.post("edit", action="rename", section="Science", label="Science news")
    assert answer.status_code == 400
    assert "a topic readers chose" in answer.text
    assert editor.layout()[0][0] == "Science"


def test_the_intro_is_markdown_rendered_in_the_email(editor: EditorSite) -> None:
    editor.edit(
        action="intro", intro="Hello **readers**,\r\n\r\n- one\n- two\n\n<script>x</script>"
    )
    issue = editor.issue()
    assert issue.intro.startswith("Hello **readers**,\n\n- one")
    html = editor.page("/email").text
    assert "<strong>readers</strong>" in html
    assert "<li" in html and "<script>x" not in html
    assert "**readers**" in editor.page().text  # the form shows the Markdown as written


def test_the_subject_replaces_the_template_subject_and_empty_restores_it(
    editor: EditorSite,
) -> None:
    editor.edit(action="subject", subject="  Big week\nfor science  ")
    assert editor.issue().subject == "Big week for science"
    page = editor.page().text
    assert re.search(r'id="inbox-subject">Big week for science<', page)
    assert "<title>Big week for science</title>" in editor.page("/email").text
    editor.edit(action="subject", subject="")
    assert re.search(r'id="inbox-subject">The Weekly — March 3, 2025<', editor.page().text)


def test_an_unknown_item_or_edit_is_refused(editor: EditorSite) -> None:
    assert editor.post("edit", action="drop", article="nope").status_code == 400
    assert editor.post("edit", action="explode", article="s1").status_code == 400
    assert editor.layout()[0] == ("Science", ("s1", "s2", "s3"))


def test_an_overlong_intro_is_refused(editor: EditorSite) -> None:
    answer = editor.post("edit", action="intro", intro="x" * 5001)
    assert answer.status_code == 400
    assert editor.issue().intro == ""


def test_an_edit_the_templates_cannot_render_is_refused_and_not_saved(
    editor: EditorSite, tmp_path: Path
) -> None:
    # The operator's own text template, which fails on one particular intro.
    bundled = (Path(__file__).parents[2] / "templates" / "digest.txt.j2").read_text("utf-8")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "digest.txt.j2").write_text(
        '{% if issue.intro == "break me" %}{{ no_such_variable }}{% endif %}' + bundled, "utf-8"
    )
    answer = editor.post("edit", action="intro", intro="break me")
    assert answer.status_code == 400
    assert "digest.txt.j2" in answer.text and "no_such_variable" in answer.text
    assert editor.issue().intro == ""
    editor.edit(action="intro", intro="fine")
    assert editor.issue().intro == "fine"


# --- forms from a page that is out of date ----------------------------------------------------


def test_the_second_of_two_edits_from_one_page_is_refused_and_shows_the_issue_now(
    editor: EditorSite,
) -> None:
    opened = editor.form_fields()
    assert editor.post("edit", opened, action="drop", article="s1").status_code == 303
    answer = editor.post("edit", opened, action="drop", article="s2")
    assert answer.status_code == 409
    assert "The issue changed since you opened it" in answer.text
    assert seen_stamp(answer.text) != opened["seen"]  # its forms are for the issue as it is now
    assert editor.layout()[0] == ("Science", ("s2", "s3"))
    assert editor.post("edit", action="drop", article="s2").status_code == 303


def test_an_edit_from_another_tab_is_not_overwritten_within_one_clock_tick(
    editor: EditorSite,
) -> None:
    # The test clock stands still: the stamp must still move with every change.
    opened = editor.form_fields()
    assert editor.post("edit", opened, action="intro", intro="Mine").status_code == 303
    assert editor.post("edit", opened, action="intro", intro="Theirs").status_code == 409
    assert editor.issue().intro == "Mine"


def test_an_approval_from_a_page_opened_before_an_edit_is_refused(editor: EditorSite) -> None:
    opened = editor.form_fields()
    editor.edit(action="drop", article="s1")
    answer = editor.post("approve", opened, when="now")
    assert answer.status_code == 409
    assert "The issue changed since you opened it" in answer.text
    assert editor.status() == "draft"
    assert editor.post("approve", when="now").status_code == 303
    assert editor.status() == "approved"


def test_cancelling_from_a_page_opened_before_an_approval_is_refused(editor: EditorSite) -> None:
    opened = editor.form_fields()
    assert editor.post("approve", when="now").status_code == 303
    assert editor.post("cancel", opened).status_code == 409
    assert editor.status() == "approved"


def test_a_form_without_the_issue_stamp_changes_nothing(editor: EditorSite) -> None:
    hidden = {"csrf_token": editor.form_fields()["csrf_token"]}
    for form, fields in (
        ("edit", {"action": "drop", "article": "s1"}),
        ("approve", {}),
        ("cancel", {}),
    ):
        assert editor.post(form, hidden, **fields).status_code == 409
    assert editor.layout()[0] == ("Science", ("s1", "s2", "s3"))
    assert editor.status() == "draft"
