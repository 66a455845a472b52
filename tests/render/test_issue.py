"""render_issue and personalise: escaping, markers, size budget, and one-line errors."""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import pytest
from markupsafe import escape

from digest.errors import RenderError
from digest.models import OTHER_NEWS, Issue, Section
from digest.render import (
    GMAIL_CLIP_BYTES,
    RenderContext,
    personalise,
    render_issue,
    template_environment,
)
from digest.render.issue import SIZE_BUDGET_BYTES, render_web_version
from tests.render.sample_issue import (
    BODY,
    HOSTILE_TEXT,
    HOSTILE_TITLE,
    sample_article,
    sample_issue,
)

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it

BBC_CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus" / "topics_bbc_news"


class _Links(HTMLParser):
    """Collects (href, link text) of every <a> in an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open = dict(attrs).get("href") or ""
            self.links.append((self._open, ""))

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            href, text = self.links[-1]
            self.links[-1] = (href, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._open = None


def all_links(html: str) -> list[tuple[str, str]]:
    """(link text, href) of every <a>, in document order."""
    parser = _Links()
    parser.feed(html)
    return [(text.strip(), href) for href, text in parser.links]


def links_of(html: str) -> dict[str, str]:
    return dict(all_links(html))


def render(issue: Issue, env: jinja2.Environment, context: RenderContext, template: str = "digest"):
    return render_issue(issue, template=template, env=env, context=context)


def test_digest_shows_every_headline_linked_with_source_and_sections(env, context):
    issue = sample_issue(12, intro="Hello readers,\n\nA busy week for transport.")
    rendered = render(issue, env, context)
    links = links_of(rendered.html)
    for section in issue.sections:
        assert str(escape(section.label)) in rendered.html
        assert section.label.upper() in rendered.text
        for article in section.articles:
            assert links[article.title] == article.url
            assert article.url in rendered.text
    assert "A busy week for transport." in rendered.html
    assert "Also in: Reuters and Associated Press" in rendered.text
    assert rendered.subject == "Weekly Digest — March 3, 2025"
    assert rendered.preheader.startswith(issue.sections[0].articles[0].title)
    assert f"<title>{escape(rendered.subject)}</title>" in rendered.html
    assert rendered.size_bytes == len(rendered.html.encode("utf-8"))


def test_article_text_is_escaped_and_never_run_as_template_code(env, context):
    rendered = render(sample_issue(6, hostile=True), env, context)
    assert str(escape(HOSTILE_TITLE)) in rendered.html
    assert "Budget 49" not in rendered.html and "Budget 49" not in rendered.text
    assert "<script" not in rendered.html.lower()
    assert "<img src=x" not in rendered.html
    assert str(escape(HOSTILE_TEXT.split(". ")[1])) in rendered.html
    assert "{{ 7*7 }}" in rendered.text  # the text part is not HTML: shown as written
    assert "{% include 'digest.txt.j2' %}" in rendered.text


def test_forged_markers_in_article_text_stay_text_after_personalise(env, context, recipient):
    rendered = render(sample_issue(6, hostile=True), env, context)
    html, text = personalise(rendered, recipient)
    assert "%%digest-0123456789abcdef:unsubscribe_url%%" in text
    assert "%%digest-0123456789abcdef:email%%" in text
    assert "%%digest-0123456789abcdef:unsubscribe_url%%" in html
    assert text.count(recipient["unsubscribe_url"]) == 1


def test_article_quoting_a_real_marker_of_another_issue_is_not_filled(env, context, recipient):
    first = render(sample_issue(3), env, context)
    quoted = f"%%digest-{first.nonce}:unsubscribe_url%%"
    attack = replace(
        sample_issue(3), sections=(Section("Leaks", (sample_article(1, title=quoted),)),)
    )
    second = render(attack, env, context)
    assert second.nonce != first.nonce
    html, text = personalise(second, recipient)
    assert quoted in html and quoted in text


def test_personalise_fills_the_unsubscribe_link_escaped_in_html_and_plain_in_text(
    env, context, recipient
):
    rendered = render(sample_issue(5), env, context)
    html, text = personalise(rendered, recipient)
    links = links_of(html)
    assert links["Unsubscribe"] == recipient["unsubscribe_url"]
    # No preferences page exists yet: its personal link is accepted but not shown anywhere.
    assert recipient["preferences_url"] not in html + text
    assert "Choose topics" not in html + text
    assert "unsubscribe?t=abc.def&amp;list=demo" in html
    assert f"Unsubscribe: {recipient['unsubscribe_url']}" in text
    assert recipient["email"] in html and recipient["email"] in text
    assert "%%digest-" not in html + text


def test_a_cut_summary_ends_with_a_read_more_link_to_its_article(env, context):
    whole = "A short summary. It is kept whole."
    articles = (
        sample_article(1),
        sample_article(2, summary=whole),
        sample_article(3, url="javascript:alert(1)"),
    )
    issue = replace(sample_issue(3), sections=(Section("News", articles),))
    rendered = render(issue, env, context)
    first, second = BODY.split(". ")[:2]  # 168 and 90 characters: the second does not fit
    text = " ".join(rendered.text.split())
    assert f"{first}." in rendered.html and f"{first}." in text
    assert second not in rendered.html and second not in text
    assert f'<div dir="auto">{whole}</div>' in rendered.html
    read_more = [href for text, href in all_links(rendered.html) if text == "Read more →"]
    assert read_more == [articles[0].url]  # not for a whole summary, nor for a non-web link
    assert "javascript:" not in rendered.html


def test_a_headline_without_a_web_link_is_plain_text_styled_once(env, context):
    article = sample_article(1, url="javascript:alert(1)")
    issue = replace(sample_issue(1), sections=(Section("News", (article,)),))
    html = render(issue, env, context).html
    span = re.search(r'<span class="dm-title" style="([^"]*)">([^<]*)</span>', html)
    assert span is not None and span.group(2) == article.title
    assert span.group(1).count("color:") == 1
    assert re.search(r"\.dm-title\s*\{[^}]*color:", html) or ".dm-card .dm-title" in html


def test_personalised_values_are_escaped_and_not_scanned_again(env, context, recipient):
    rendered = render(sample_issue(2), env, context)
    sneaky = f'"><script>x</script>%%digest-{rendered.nonce}:email%%'
    html, text = personalise(rendered, {**recipient, "email": sneaky})
    assert "<script>x" not in html
    assert sneaky in text  # text is not HTML; the marker inside the value was not refilled


def test_personalise_without_a_value_raises(env, context, recipient):
    rendered = render(sample_issue(2), env, context)
    values = {name: value for name, value in recipient.items() if name != "unsubscribe_url"}
    with pytest.raises(RenderError, match="unsubscribe_url"):
        personalise(rendered, values)


def test_same_issue_renders_the_same_bytes(env, context):
    assert render(sample_issue(8), env, context) == render(sample_issue(8), env, context)


def test_thirty_articles_stay_under_the_gmail_clip(env, context):
    rendered = render(sample_issue(30, intro="Hello readers."), env, context)
    print(f"\n30-article digest: {rendered.size_bytes} bytes of HTML")
    assert rendered.size_bytes < SIZE_BUDGET_BYTES < GMAIL_CLIP_BYTES
    assert rendered.warnings == ()


def test_thirty_real_bbc_articles_stay_under_the_gmail_clip(env, context):
    corpus = BBC_CORPUS / "bbc_news.jsonl.gz"
    if not corpus.exists():
        pytest.skip(f"corpus absent: {corpus}")
    with gzip.open(corpus, "rt", encoding="utf-8") as lines:
        records = [json.loads(line) for _, line in zip(range(30), lines, strict=False)]
    articles = [
        sample_article(number, title=record["title"], text=record["text"])
        for number, record in enumerate(records)
    ]
    issue = replace(sample_issue(30), sections=(Section("Business", tuple(articles)),))
    rendered = render(issue, env, context)
    print(f"\n30 BBC articles: {rendered.size_bytes} bytes of HTML")
    assert rendered.size_bytes < SIZE_BUDGET_BYTES
    assert str(escape(records[29]["title"])) in rendered.html


def test_an_oversized_issue_carries_a_clip_warning(env, context):
    rendered = render(sample_issue(250), env, context)
    assert rendered.size_bytes > SIZE_BUDGET_BYTES
    assert any("Gmail clips" in warning for warning in rendered.warnings)


def test_subject_stays_on_one_line(env, context):
    issue = replace(sample_issue(1), title="Weekly\r\nBcc: victim@example.com")
    assert render(issue, env, context).subject == "Weekly Bcc: victim@example.com — March 3, 2025"


def test_dates_follow_the_locale_and_timezone(env):
    context = RenderContext(
        publication="Demo", base_url="https://d.example", locale="de", timezone="Pacific/Auckland"
    )
    rendered = render(sample_issue(2), env, context)
    assert rendered.subject == "Weekly Digest — 3. März 2025"  # 07:00 UTC is 20:00 in Auckland
    assert '<html lang="de"' in rendered.html


def _user_env(tmp_path: Path, name: str, source: str) -> jinja2.Environment:
    (tmp_path / name).write_text(source, encoding="utf-8")
    return template_environment(tmp_path)


def test_template_syntax_error_is_one_line_with_file_and_line(tmp_path, context):
    env = _user_env(tmp_path, "digest.mjml.j2", "<mjml>\n<mj-body>\n{% for x in %}\n</mjml>\n")
    with pytest.raises(RenderError) as raised:
        render(sample_issue(2), env, context)
    message = str(raised.value)
    assert "\n" not in message
    assert re.search(r"digest\.mjml\.j2:3: template syntax error", message)


def test_undefined_variable_names_the_template_line(tmp_path, context):
    env = _user_env(tmp_path, "digest.mjml.j2", "<mjml>\n<mj-body>{{ issue.subtitle }}</mj-body>\n")
    with pytest.raises(RenderError, match=r"digest\.mjml\.j2:2: UndefinedError: .*subtitle"):
        render(sample_issue(2), env, context)


def test_mjml_that_does_not_compile_raises(tmp_path, context):
    source = "<mjml><mj-body><mj-section><mj-column><mj-text>{{ unsubscribe_url }}</mjml>"
    env = _user_env(tmp_path, "digest.mjml.j2", source)
    with pytest.raises(RenderError, match="digest.mjml.j2: MJML does not compile"):
        render(sample_issue(2), env, context)


def test_template_without_unsubscribe_link_is_refused(tmp_path, context):
    source = (
        "<mjml><mj-body><mj-section><mj-column><mj-text>Hi</mj-text>"
        "</mj-column></mj-section></mj-body></mjml>"
    )
    env = _user_env(tmp_path, "digest.mjml.j2", source)
    with pytest.raises(RenderError, match="unsubscribe_url"):
        render(sample_issue(2), env, context)


def test_unknown_template_and_locale_raise(env, context):
    with pytest.raises(RenderError, match="'weekly.mjml.j2' not found"):
        render(sample_issue(2), env, context, template="weekly")
    with pytest.raises(RenderError, match="unknown locale 'xx'"):
        render(sample_issue(2), env, RenderContext("Demo", "https://d.example", locale="xx"))


# --- the parts of a newsroom digest --------------------------------------------------------

FULL_CONTEXT = RenderContext(
    publication="Demo Digest",
    base_url="https://digest.example.org",
    logo_url="https://digest.example.org/logo.png",
    postal_address="Demo Digest, 4 Mill Lane, Tamsett TV1 2AB",
    web_url="https://digest.example.org/issues/7",
    show_preferences=True,
)
PICTURE = "https://img.example.org/photo.jpg"


def with_pictures(issue: Issue) -> Issue:
    """Every article of `issue` with a picture (a javascript: one for the last article)."""
    sections = []
    for section in issue.sections:
        articles = [replace(article, image=PICTURE) for article in section.articles]
        sections.append(replace(section, articles=tuple(articles)))
    last = sections[-1]
    bad = replace(last.articles[-1], image="javascript:alert(1)")
    sections[-1] = replace(last, articles=(*last.articles[:-1], bad))
    return replace(issue, sections=tuple(sections), number=12)


def test_header_has_logo_number_date_count_and_contents_linking_to_each_section(env, recipient):
    rendered = render(with_pictures(sample_issue(30)), env, FULL_CONTEXT)
    html, text = personalise(rendered, recipient)
    assert '<img src="https://digest.example.org/logo.png" alt="Demo Digest"' in html
    assert "No. 12 · March 3, 2025 · 30 stories" in html
    assert "No. 12 · March 3, 2025 · 30 stories" in text
    contents = [href for label, href in all_links(html) if href.startswith("#section-")]
    assert contents == [f"#section-{n}" for n in range(1, 6)]
    for n in range(1, 6):
        assert f'id="section-{n}"' in html
    assert "In this issue:\n  1. Politics (6)\n  2. Business & Economy (6)" in text


def test_contents_appear_only_when_there_are_three_sections_or_more(env, context):
    two = replace(sample_issue(4), sections=sample_issue(4).sections[:2])
    rendered = render(two, env, context)
    assert "#section-1" not in rendered.html and "In this issue" not in rendered.text


def test_cards_show_reading_time_and_pictures_with_alt_text(env, context):
    issue = with_pictures(sample_issue(30))
    html = render(issue, env, context).html
    lead = issue.sections[0].articles[0]
    assert f'<img src="{PICTURE}" alt="{escape(lead.title)}" width="552"' in html
    assert html.count('width="96"') == 30 - 5 - 1  # thumbnails: not the leads, not javascript:
    assert "javascript:" not in html
    assert "1 min read" in html
    without = render(issue, env, replace(context, images=False)).html
    assert PICTURE not in without


def test_footer_explains_and_links_unsubscribe_preferences_web_version_and_address(env, recipient):
    html, text = personalise(render(sample_issue(3), env, FULL_CONTEXT), recipient)
    links = links_of(html)
    assert links["Unsubscribe"] == recipient["unsubscribe_url"]
    assert links["Manage preferences"] == recipient["preferences_url"]
    assert links["View in browser"] == "https://digest.example.org/issues/7"
    assert "Demo Digest, 4 Mill Lane, Tamsett TV1 2AB" in html
    assert "because ada@example.com subscribed at" in html
    assert f"Manage preferences: {recipient['preferences_url']}" in text
    assert "View in browser: https://digest.example.org/issues/7" in text
    assert "Demo Digest, 4 Mill Lane, Tamsett TV1 2AB" in text
    plain = render(sample_issue(3), env, replace(FULL_CONTEXT, web_url="", show_preferences=False))
    assert "View in browser" not in plain.html and "Manage preferences" not in plain.html


def test_intro_is_markdown_sanitised_and_never_a_template(env, context):
    intro = "Hello **readers**, {{ 7*7 }} [vote](https://e.org/v) <script>x()</script>"
    rendered = render(sample_issue(3, intro=intro), env, context)
    assert "<strong>readers</strong>, {{ 7*7 }}" in rendered.html
    assert "49" not in rendered.html.split("<body", 1)[1].split("readers", 1)[1][:40]
    assert "<script>x()" not in rendered.html and "&lt;script&gt;" in rendered.html
    assert "Hello readers, {{ 7*7 }} vote <https://e.org/v>" in rendered.text


def test_hostile_titles_render_inert_and_tidy(env, context, recipient):
    override = "Invoice \u202efdp.exe"
    crlf = "Line one\r\nBcc: victim@example.com"
    giant = "Giant " + "A" * 5000
    articles = tuple(
        sample_article(n, title=title)
        for n, title in enumerate((override, crlf, giant, "<b onmouseover=x>{{ 7*7 }}</b>"))
    )
    issue = replace(sample_issue(4), sections=(Section("Odd", articles),))
    html, text = personalise(render(issue, env, context), recipient)
    assert "\u202e" not in html and "\u202e" not in text
    assert "Invoice fdp.exe" in html
    assert "Line one Bcc: victim@example.com" in html and "\r" not in html
    assert "Line one Bcc: victim@example.com" in text
    titles = [label for label, href in all_links(html) if href.startswith("https://www.news")]
    assert max(len(title) for title in titles) <= 200
    assert "A" * 201 not in html and "A" * 201 not in text
    assert "&lt;b onmouseover=x&gt;{{ 7*7 }}&lt;/b&gt;" in html and "<b onmouseover" not in html


def test_a_full_thirty_article_issue_with_pictures_stays_under_the_gmail_clip(env, recipient):
    intro = "A busy week.\n\n- one [link](https://e.org/a)\n- two\n\n" + "Long intro. " * 40
    rendered = render(with_pictures(sample_issue(30, intro=intro)), env, FULL_CONTEXT)
    html, _text = personalise(rendered, recipient)
    print(f"\n30 articles, every part on: {len(html.encode())} bytes")
    assert len(html.encode("utf-8")) <= GMAIL_CLIP_BYTES
    assert rendered.warnings == ()


def test_right_to_left_locales_set_dir_and_align_to_the_right():
    env = template_environment(locale="ar")
    context = RenderContext("النشرة", "https://d.example", locale="ar")
    issue = replace(sample_issue(2), title="الأسبوعية")
    html = render(issue, env, context).html
    assert '<html lang="ar" dir="rtl"' in html
    # Every text block reads from the right (MJML fixes only the column wrapper's alignment).
    assert 'align="left"' not in html and 'align="right"' in html
    assert "direction:ltr" not in html and "direction:rtl" in html
    german = render(
        sample_issue(2), template_environment(locale="de"), replace(context, locale="de")
    )
    assert '<html lang="de" dir="ltr"' in german.html


def test_the_catch_all_section_is_named_in_the_reader_s_language(env, context):
    issue = replace(
        sample_issue(2), sections=(Section(OTHER_NEWS, sample_issue(2).sections[0].articles),)
    )
    english = render(issue, env, context)
    assert "Other news" in english.html
    german = render(issue, template_environment(locale="de"), replace(context, locale="de"))
    assert "Other news" not in german.html and "Other news" not in german.text


def test_the_web_version_has_the_articles_and_no_reader_in_it(env):
    issue = with_pictures(sample_issue(6))
    page = render_web_version(issue, template="digest", env=env, context=FULL_CONTEXT)
    assert "%%digest-" not in page
    assert "Unsubscribe" not in page and "View in browser" not in page
    assert "You are reading the web version of Demo Digest" in page
    assert str(escape(issue.sections[0].articles[0].title)) in page


def test_a_template_using_a_personal_field_in_its_web_version_is_refused(tmp_path):
    source = (
        "<mjml><mj-body><mj-section><mj-column><mj-text>{{ unsubscribe_url }}</mj-text>"
        "</mj-column></mj-section></mj-body></mjml>"
    )
    env = _user_env(tmp_path, "digest.mjml.j2", source)
    with pytest.raises(RenderError, match="unsubscribe_url is personal; the web version"):
        render_web_version(sample_issue(2), template="digest", env=env, context=FULL_CONTEXT)
