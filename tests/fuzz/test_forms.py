"""Every form the app accepts (signup, confirm, preferences, unsubscribe, the editor's forms)
posted with arbitrary fields, repeated fields, files, invalid UTF-8, broken multipart, odd
cookies and huge bodies: the answer is a page or a redirect, never a 500, and memory stays
bounded whatever the body's size."""

from __future__ import annotations

import tracemalloc
from urllib.parse import quote_from_bytes, urlencode

import httpx
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from digest.web.csrf import COOKIE_NAME
from tests.fuzz.hostile import FUZZ
from tests.fuzz.site import WholeSite, shared_site
from tests.web.public_site import csrf_token

__all__ = ["shared_site"]

FIELD_NAMES = st.sampled_from(
    ["csrf_token", "email", "name", "topic", "cadence", "website", "action", "from",
     "List-Unsubscribe", "password", "next", "everywhere", "seen", "article", "section", "label",
     "new_section", "to", "intro", "subject", "topics", "addresses", "when", "send_at"]
)  # fmt: skip
FIELD_VALUES = st.sampled_from(
    ["ann@example.org", "Science", "Sport", "weekly", "daily", "paused", "export", "delete",
     "erase", "unsubscribe", "save", "One-Click", "page", "drop", "pin", "up", "down", "move",
     "rename", "intro", "subject", "later", "2025-03-03T10:00", "9999-12-31T23:59", "yes",
     "a0", "a2", "{{ 7*7 }}", "{% for x in () %}", "<script>alert(1)</script>", "\x00", "é",
     "\ud800", "x" * 5000, "a@b.c, " * 30, "2025-03-03T08:00:00+00:00", "/editor//evil"]
)  # fmt: skip
fields = st.lists(
    st.tuples(FIELD_NAMES | st.text(max_size=8), FIELD_VALUES | st.text(max_size=40)), max_size=10
)
MULTIPART_X = "multipart/form-data; boundary=x"
RAW_BODIES = st.sampled_from(
    [
        (b"email=%FF%FE&name=%C3", "application/x-www-form-urlencoded"),
        (b"\xff\xfe\x00garbage", "application/x-www-form-urlencoded"),
        (b"--x\r\nContent-Disposition: form-data\r\n\r\nno name\r\n--x--", MULTIPART_X),
        (b"--x\r\nbroken", MULTIPART_X),
        (b"no boundary", "multipart/form-data"),
        (b'{"email": "ann@example.org"}', "application/json"),
        (b"a=" + b"&a=" * 300, "application/x-www-form-urlencoded"),
        (b"", "text/plain"),
    ]
)  # fmt: skip
PUBLIC_PATHS = ("/subscribe", "/subscribe/weekly", "/subscribe/nope", "/confirm/{bad}",
                "/p/{preferences}", "/p/{bad}", "/u/{unsubscribe}", "/u/{bad}")  # fmt: skip
EDITOR_PATHS = ("/editor/login", "/editor/logout", "/editor/issues/{issue}/edit",
                "/editor/issues/{issue}/test", "/editor/issues/{issue}/approve",
                "/editor/issues/{issue}/cancel", "/editor/issues/999/edit")  # fmt: skip
COOKIES = st.sampled_from(
    [None] * 8 + ["é", "x" * 22, "\x7f", "a b", '"quoted"', "AAAAAAAAAAAAAAAAAAAAAA"]
)


def form_request(data: st.DataObject, csrf: str, seen: str) -> tuple[bytes, dict[str, str | bytes]]:
    """A body and its headers: urlencoded, multipart (with files) or raw bytes, carrying the
    page's own hidden fields or not."""
    pairs = data.draw(fields, label="fields")
    # Mostly with the page's own hidden fields, so the examples get past the CSRF check.
    if data.draw(st.sampled_from([True, True, True, False]), label="with the hidden fields"):
        pairs = [*pairs, ("csrf_token", csrf), ("seen", seen)]  # the last of a name counts
    kind = data.draw(
        st.sampled_from(["urlencoded", "urlencoded", "multipart", "raw"]), label="encoding"
    )
    if kind == "raw":
        body, content_type = data.draw(RAW_BODIES, label="raw body")
        return body, {"content-type": content_type}
    encoded = [
        (k.encode("utf-8", "surrogatepass"), v.encode("utf-8", "surrogatepass")) for k, v in pairs
    ]
    if kind == "urlencoded":
        body = "&".join(f"{quote_from_bytes(k)}={quote_from_bytes(v)}" for k, v in encoded).encode()
        return body, {"content-type": "application/x-www-form-urlencoded"}
    request = httpx.Request(
        "POST",
        "http://testserver/",
        data={k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in encoded},
        files={"upload": ("x.txt", b"\x00\xff file", "text/plain")}
        if data.draw(st.booleans(), label="with a file")
        else {"_": (None, b"")},
    )
    return request.read(), {"content-type": request.headers["content-type"]}


def check_answer(answer: httpx.Response) -> None:
    event(f"status {answer.status_code}")  # how deep the examples got: --hypothesis-show-statistics
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])
    assert answer.status_code in (200, 303, 400, 401, 403, 404, 409, 429), answer.status_code
    assert "Traceback" not in answer.text


@settings(FUZZ, max_examples=80)
@example(path="/subscribe", cookie="é", data=None)  # a non-ASCII CSRF cookie: was a 500
@given(path=st.sampled_from(PUBLIC_PATHS), cookie=COOKIES, data=st.data())
def test_public_forms_never_answer_500(
    shared_site: WholeSite, path: str, cookie: str | None, data: st.DataObject | None
) -> None:
    site = shared_site
    url = path.format(
        bad="not-a-token", preferences=site.preferences_token, unsubscribe=site.unsubscribe_token
    )
    csrf = csrf_token(site.client.get("/subscribe").text)
    if data is None:  # the explicit example: the page's own field, a cookie not ours
        body, headers = (
            urlencode({"csrf_token": csrf, "email": "ann@example.org"}).encode(),
            {"content-type": "application/x-www-form-urlencoded"},
        )
    else:
        body, headers = form_request(data, csrf, "")
    if cookie is not None:
        headers["cookie"] = f"{COOKIE_NAME}={cookie}".encode("latin-1")
    check_answer(site.client.post(url, content=body, headers=headers))


@settings(FUZZ, max_examples=50)
@example(path="/editor/issues/{issue}/edit", data=None)  # a non-ASCII CSRF field: was a 500
@given(path=st.sampled_from(EDITOR_PATHS), data=st.data())
def test_editor_forms_never_answer_500(
    shared_site: WholeSite, path: str, data: st.DataObject | None
) -> None:
    site = shared_site
    site.new_draft()
    # The login page carries the same session-bound CSRF field as an issue page, and the
    # store gives the issue's stamp: no preview is rendered for every example.
    csrf = csrf_token(site.editor.get("/editor/login").text)
    summary = site.store.issue_summary(site.issue_id)
    assert summary is not None
    seen = summary.updated.isoformat()
    url = path.format(issue=site.issue_id)
    if data is None:
        body = urlencode({"csrf_token": "é", "seen": seen, "action": "drop"}).encode()
        headers: dict[str, str | bytes] = {"content-type": "application/x-www-form-urlencoded"}
    else:
        body, headers = form_request(data, csrf, seen)
    answer = site.editor.post(url, content=body, headers=headers)
    check_answer(answer)
    if path == "/editor/logout" and answer.status_code == 303:
        site.log_editor_in()  # for the examples that follow


EMAIL_PART = b'Content-Disposition: form-data; name="email"\r\n\r\n'


async def test_huge_form_bodies_are_read_in_bounded_memory(shared_site: WholeSite) -> None:
    """20 MB in one urlencoded or multipart field, streamed: a page in return (the CSRF check
    refuses it), with memory a small fraction of the body."""
    transport = httpx.ASGITransport(app=shared_site.app)
    bodies = (
        ("application/x-www-form-urlencoded", b"email="),
        ("multipart/form-data; boundary=xx", b"--xx\r\n" + EMAIL_PART),
    )  # fmt: skip
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for content_type, head in bodies:

            async def chunks(head: bytes = head) -> object:
                yield head
                for _ in range(320):
                    yield b"a" * 65_536

            tracemalloc.start()
            try:
                answer = await client.post(
                    "/subscribe",
                    content=chunks(),
                    headers={"content-type": content_type},  # type: ignore[arg-type]
                )
                _current, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert answer.status_code in (400, 403, 413), answer.status_code
            assert peak < 4_000_000, (content_type, peak)
