"""template_environment: where templates come from, what escapes, which filters and words exist."""

from __future__ import annotations

import pytest
from jinja2.sandbox import SecurityError

from digest.errors import RenderError
from digest.render import RenderContext, bundled_templates_dir, render_issue, template_environment
from digest.render.environment import is_html_template
from tests.render.sample_issue import sample_issue

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it


def test_bundled_templates_hold_the_default_digest():
    folder = bundled_templates_dir()
    assert (folder / "digest.mjml.j2").is_file()
    assert (folder / "digest.txt.j2").is_file()


def test_user_templates_win_over_bundled_ones(tmp_path):
    (tmp_path / "digest.txt.j2").write_text(
        "Custom {{ publication }} text. Leave: {{ unsubscribe_url }}\n", encoding="utf-8"
    )
    env = template_environment(tmp_path)
    context = RenderContext(publication="Demo Digest", base_url="https://d.example")
    rendered = render_issue(sample_issue(3), template="digest", env=env, context=context)
    assert rendered.text.startswith("Custom Demo Digest text. Leave: %%digest-")
    assert "Council approves" in rendered.html  # the HTML still comes from the bundled template


def test_a_missing_user_dir_falls_back_to_the_bundled_templates(tmp_path):
    env = template_environment(tmp_path / "absent")
    assert env.get_template("digest.txt.j2").filename.startswith(str(bundled_templates_dir()))


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ("digest.mjml.j2", True),
        ("page.html", True),
        ("confirm.html.j2", True),
        ("digest.txt.j2", False),
        ("notes.TXT", False),
        ("mystery.j2", True),
        (None, True),
    ],
)
def test_only_plain_text_templates_skip_autoescape(name, escaped):
    assert is_html_template(name) is escaped


def test_html_templates_escape_and_text_templates_do_not(tmp_path):
    (tmp_path / "x.html.j2").write_text("{{ value }}", encoding="utf-8")
    (tmp_path / "x.txt.j2").write_text("{{ value }}", encoding="utf-8")
    env = template_environment(tmp_path)
    assert env.get_template("x.html.j2").render(value="<b>") == "&lt;b&gt;"
    assert env.get_template("x.txt.j2").render(value="<b>") == "<b>"


def test_templates_cannot_reach_python_internals(tmp_path):
    (tmp_path / "evil.txt.j2").write_text("{{ ''.__class__.__mro__ }}", encoding="utf-8")
    env = template_environment(tmp_path)
    with pytest.raises(SecurityError, match="unsafe"):
        env.get_template("evil.txt.j2").render()


def test_filters_named_in_the_contract_exist():
    assert {"date", "domain", "truncate_words"} <= set(template_environment().filters)


def test_trans_blocks_escape_their_variables_in_html_but_not_in_text(tmp_path):
    block = "{% trans name=value %}From {{ name }}{% endtrans %}|{{ _('To %(who)s', who=value) }}"
    (tmp_path / "x.html.j2").write_text(block, encoding="utf-8")
    (tmp_path / "x.txt.j2").write_text(block, encoding="utf-8")
    env = template_environment(tmp_path)
    assert env.get_template("x.html.j2").render(value="<b>") == "From &lt;b&gt;|To &lt;b&gt;"
    assert env.get_template("x.txt.j2").render(value="<b>") == "From <b>|To <b>"


def test_trans_blocks_are_trimmed_to_one_line(tmp_path):
    (tmp_path / "x.txt.j2").write_text(
        "{% trans %}\n  Read\n    more\n{% endtrans %}", encoding="utf-8"
    )
    assert template_environment(tmp_path).get_template("x.txt.j2").render() == "Read more"


@pytest.mark.parametrize(
    ("count", "expected"), [(1, "1 story"), (2, "2 stories"), (0, "0 stories")]
)
def test_the_english_source_chooses_singular_or_plural(tmp_path, count, expected):
    (tmp_path / "x.txt.j2").write_text(
        "{% trans count=n %}{{ count }} story{% pluralize %}{{ count }} stories{% endtrans %}",
        encoding="utf-8",
    )
    assert template_environment(tmp_path).get_template("x.txt.j2").render(n=count) == expected


def test_a_literal_percent_sign_is_written_doubled(tmp_path):
    # newstyle gettext always %-formats, so a lone % in a message would be a format error
    (tmp_path / "x.txt.j2").write_text("{{ _('100%% read') }}", encoding="utf-8")
    assert template_environment(tmp_path).get_template("x.txt.j2").render() == "100% read"


def test_templates_speak_the_environments_language(tmp_path):
    (tmp_path / "x.txt.j2").write_text("{% trans %}Unsubscribe{% endtrans %}", encoding="utf-8")
    assert template_environment(tmp_path).get_template("x.txt.j2").render() == "Unsubscribe"
    german = template_environment(tmp_path, locale="de").get_template("x.txt.j2").render()
    assert german == "Abmelden"


def test_an_unknown_locale_is_refused_when_the_environment_is_built():
    with pytest.raises(RenderError, match=r"^unknown locale 'xx-unknown'$"):
        template_environment(locale="xx-unknown")
