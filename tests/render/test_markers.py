"""Personalisation markers: unforgeable names, split once, escaping per part, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from digest.errors import RenderError
from digest.render import RenderContext, personalise, render_issue, template_environment
from digest.render.markers import (
    PERSONAL_FIELDS,
    PersonalTemplate,
    Slot,
    escape_html,
    fill_markers,
    keep_text,
    marker,
    marker_nonce,
    marker_variables,
    split_markers,
)
from tests.render.sample_issue import sample_issue

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it

GREETING_MJML = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Hi {{ personal("name", "there & friends") }},</mj-text>
<mj-text><a href="{{ unsubscribe_url }}">Unsubscribe {{ email }}</a></mj-text>
</mj-column></mj-section></mj-body></mjml>
"""
GREETING_TEXT = """Hi {{ personal("name", "there & friends") }},
Unsubscribe: {{ unsubscribe_url }}
"""


def test_nonce_is_stable_for_the_same_inputs_and_changes_with_them():
    assert marker_nonce("digest", "a") == marker_nonce("digest", "a")
    assert marker_nonce("digest", "a") != marker_nonce("digest", "b")
    assert len(marker_nonce("x")) == 16


def test_marker_variables_cover_the_personal_fields_and_the_personal_function():
    variables = marker_variables("n")
    personal = variables.pop("personal")
    assert {"email", "unsubscribe_url", "preferences_url", "name"} <= set(PERSONAL_FIELDS)
    assert variables == {field: f"%%digest-n:{field}%%" for field in PERSONAL_FIELDS}
    assert callable(personal)


def test_a_default_is_hex_encoded_inside_the_marker():
    assert marker("n", "name", "Hi") == "%%digest-n:name:4869%%"
    assert marker("n", "name", "") == marker("n", "name") == "%%digest-n:name%%"


def test_a_marker_for_an_unknown_field_is_refused():
    with pytest.raises(ValueError, match="'token'"):
        marker("n", "token")


def test_a_part_is_split_into_literal_chunks_and_field_slots():
    page = f"a{marker('n', 'email')}b{marker('n', 'name', 'you')}c"
    assert split_markers(page, "n") == PersonalTemplate(
        chunks=("a", "b", "c"), slots=(Slot("email", ""), Slot("name", "you"))
    )
    assert split_markers("no markers", "n") == PersonalTemplate(("no markers",), ())


def test_values_are_html_escaped_in_html_and_raw_in_text():
    page = f'<a title="{marker("n", "name")}">{marker("n", "email")}</a>'
    values = {"name": '<&">', "email": "a&b@example.org"}
    assert fill_markers(page, "n", values, escape_html) == (
        '<a title="&lt;&amp;&quot;&gt;">a&amp;b@example.org</a>'
    )
    assert fill_markers(page, "n", values, keep_text) == '<a title="<&">">a&b@example.org</a>'


def test_markers_of_another_nonce_are_left_alone():
    text = f"{marker('other', 'email')} {marker('mine', 'email')}"
    assert (
        fill_markers(text, "mine", {"email": "a@b.c"}, keep_text)
        == f"{marker('other', 'email')} a@b.c"
    )


def test_a_marker_without_a_value_raises_naming_the_field():
    with pytest.raises(RenderError, match="'email'"):
        fill_markers(marker("n", "email"), "n", {}, keep_text)


def test_a_missing_value_raises_even_when_the_marker_has_a_default():
    with pytest.raises(RenderError, match="'name'"):
        fill_markers(marker("n", "name", "there"), "n", {"email": "a@b.c"}, keep_text)


def test_a_value_holding_another_marker_is_not_expanded():
    page = f"{marker('n', 'email')}|{marker('n', 'name')}"
    values = {"email": marker("n", "name"), "name": "Ada"}
    assert fill_markers(page, "n", values, keep_text) == f"{marker('n', 'name')}|Ada"


@pytest.mark.parametrize("name", ["", "  ", "\n"])
def test_a_blank_name_gets_the_default(name):
    page = f"Hi {marker('n', 'name', 'there')}!"
    assert fill_markers(page, "n", {"name": name}, keep_text) == "Hi there!"


def test_a_given_name_replaces_the_default_and_is_escaped():
    page = f"Hi {marker('n', 'name', 'there')}!"
    assert fill_markers(page, "n", {"name": "Ada & Co"}, escape_html) == "Hi Ada &amp; Co!"


def test_a_default_that_looks_like_a_marker_is_written_as_it_is():
    forged = f"{marker('n', 'email')}%%:name%%"
    page = f"[{marker('n', 'name', forged)}]"
    assert fill_markers(page, "n", {"name": "", "email": "x@y.z"}, keep_text) == f"[{forged}]"


def test_a_malformed_marker_of_this_nonce_raises():
    with pytest.raises(RenderError, match="malformed"):
        split_markers("%%digest-n:name:zz%%", "n")
    with pytest.raises(RenderError, match="'name'"):
        split_markers("%%digest-n:name:ff%%", "n")  # hex, but not UTF-8


@given(value=st.text(), default=st.text())
def test_filled_values_are_never_scanned_again(value, default):
    filled = fill_markers(marker("n", "name", default), "n", {"name": value}, keep_text)
    assert filled == (value if value.strip() or not default else default)


@pytest.fixture
def greeting_env(tmp_path: Path):
    (tmp_path / "greeting.mjml.j2").write_text(GREETING_MJML, encoding="utf-8")
    (tmp_path / "greeting.txt.j2").write_text(GREETING_TEXT, encoding="utf-8")
    return template_environment(tmp_path)


def test_templates_write_a_name_with_a_default_escaped_as_each_part_needs(greeting_env, recipient):
    context = RenderContext(publication="Demo Digest", base_url="https://digest.example.org")
    rendered = render_issue(sample_issue(1), template="greeting", env=greeting_env, context=context)

    html, text = personalise(rendered, {**recipient, "name": ""})
    assert "Hi there &amp; friends," in html
    assert text.startswith("Hi there & friends,\n")

    html, text = personalise(rendered, {**recipient, "name": "<Ada>"})
    assert "Hi &lt;Ada&gt;," in html
    assert text.startswith("Hi <Ada>,\n")


def test_personal_with_an_unknown_field_fails_the_render_naming_it(tmp_path, recipient):
    (tmp_path / "bad.mjml.j2").write_text(
        GREETING_MJML.replace('personal("name"', 'personal("nickname"'), encoding="utf-8"
    )
    (tmp_path / "bad.txt.j2").write_text(GREETING_TEXT, encoding="utf-8")
    context = RenderContext(publication="Demo Digest", base_url="https://digest.example.org")
    with pytest.raises(RenderError, match="bad.mjml.j2:2: .*'nickname'"):
        render_issue(
            sample_issue(1), template="bad", env=template_environment(tmp_path), context=context
        )
