"""The transactional emails: confirm, welcome and preferences-changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.errors import RenderError
from digest.render import RenderContext, personalise, template_environment
from digest.render.notice import NOTICES, render_notice

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it

CONTEXT = RenderContext(
    publication="Demo Digest",
    base_url="https://digest.example.org",
    postal_address="Demo Digest, 4 Mill Lane, Tamsett",
    show_preferences=True,
)
VALUES = {
    "email": "ana@example.org",
    "name": "Ana",
    "unsubscribe_url": "https://digest.example.org/u/tok",
    "preferences_url": "https://digest.example.org/p/tok",
    "confirm_url": "https://digest.example.org/confirm/tok?a=1&b=2",
}
ABOUT = {
    "confirm": {"list_title": "The Weekly", "topics": ("Science", "Sport"), "expires_hours": 48},
    "welcome": {"list_title": "The Weekly", "topics": (), "cadence": "weekly"},
    "preferences-changed": {"list_title": "The Weekly", "topics": ("Science",), "cadence": "daily"},
}


def rendered(notice: str, locale: str = "en", **changes: object):
    env = template_environment(locale=locale)
    context = RenderContext(**{**_fields(CONTEXT), "locale": locale})
    return render_notice(notice, env=env, context=context, variables={**ABOUT[notice], **changes})


def _fields(context: RenderContext) -> dict[str, object]:
    return {name: getattr(context, name) for name in context.__slots__}


def test_confirmation_asks_once_with_the_link_and_says_how_long_it_works():
    notice = rendered("confirm")
    html, text = personalise(notice, VALUES)
    assert notice.subject == "Confirm your subscription to The Weekly"
    assert f'href="{VALUES["confirm_url"].replace("&", "&amp;")}"' in html
    assert VALUES["confirm_url"] in text
    assert "The link works for 48 hours." in text
    assert "Topics: Science and Sport." in text
    assert "Hello Ana," in html and "Hello Ana," in text
    # Not subscribed yet: nothing to unsubscribe from.
    assert VALUES["unsubscribe_url"] not in html and "Unsubscribe" not in text


def test_a_notice_without_a_name_greets_with_the_default():
    html, text = personalise(rendered("confirm"), {**VALUES, "name": ""})
    assert "Hello there," in html and "Hello there," in text


def test_welcome_and_preference_change_say_what_was_chosen_and_how_to_leave():
    welcome_html, welcome_text = personalise(rendered("welcome"), VALUES)
    assert "You get The Weekly once a week, with every topic." in welcome_text
    assert VALUES["unsubscribe_url"] in welcome_html and VALUES["preferences_url"] in welcome_html
    changed_html, changed_text = personalise(rendered("preferences-changed"), VALUES)
    assert "You get The Weekly once a day, with these topics: Science." in changed_text
    assert "If you did not make this change" in changed_html
    paused = personalise(rendered("preferences-changed", cadence="paused"), VALUES)[1]
    assert "The Weekly is paused" in paused


@pytest.mark.parametrize("notice", NOTICES)
def test_every_notice_is_translated_and_right_to_left_where_the_language_is(notice):
    english = rendered(notice)
    for locale in ("de", "ar"):
        other = rendered(notice, locale)
        assert other.subject != english.subject
        assert f'<html lang="{locale}"' in other.html
    assert 'dir="rtl"' in rendered(notice, "ar").html


@pytest.mark.parametrize("notice", NOTICES)
def test_every_notice_has_subject_preheader_and_the_postal_address(notice):
    result = rendered(notice)
    html, text = personalise(result, VALUES)
    assert result.subject and result.preheader
    assert f"<title>{result.subject}</title>" in html
    assert "Demo Digest, 4 Mill Lane, Tamsett" in html and "Demo Digest, 4 Mill Lane" in text
    assert "%%digest-" not in html and "%%digest-" not in text


def test_unknown_notice_and_a_notice_template_without_subject_are_refused(tmp_path: Path):
    with pytest.raises(RenderError, match="unknown notice 'goodbye'"):
        render_notice("goodbye", env=template_environment(), context=CONTEXT)
    (tmp_path / "welcome.mjml.j2").write_text(
        "<mjml><mj-body><mj-section><mj-column><mj-text>{{ unsubscribe_url }}</mj-text>"
        "</mj-column></mj-section></mj-body></mjml>",
        encoding="utf-8",
    )
    with pytest.raises(RenderError, match=r"welcome.mjml.j2: sets no subject"):
        render_notice("welcome", env=template_environment(tmp_path), context=CONTEXT, variables={})


def test_a_notice_template_without_its_link_is_refused(tmp_path: Path):
    (tmp_path / "confirm.mjml.j2").write_text(
        '{% set subject = "Confirm" %}<mjml><mj-body><mj-section><mj-column>'
        "<mj-text>{{ email }}</mj-text></mj-column></mj-section></mj-body></mjml>",
        encoding="utf-8",
    )
    with pytest.raises(RenderError, match=r"confirm.mjml.j2: has no \{\{ confirm_url \}\} link"):
        rendered_with(template_environment(tmp_path), "confirm")


def test_a_link_written_with_a_default_still_counts(tmp_path: Path):
    source = (
        '{% set subject = "Confirm" %}<mjml><mj-body><mj-section><mj-column><mj-text>'
        '<a href="{{ personal("confirm_url", "https://digest.example.org") }}">go</a>'
        "</mj-text></mj-column></mj-section></mj-body></mjml>"
    )
    (tmp_path / "confirm.mjml.j2").write_text(source, encoding="utf-8")
    (tmp_path / "confirm.txt.j2").write_text("{{ confirm_url }}", encoding="utf-8")
    html, _text = personalise(rendered_with(template_environment(tmp_path), "confirm"), VALUES)
    assert VALUES["confirm_url"].replace("&", "&amp;") in html


def rendered_with(env, notice: str):
    return render_notice(notice, env=env, context=CONTEXT, variables=ABOUT[notice])
