"""Translations: every template string in every bundled language, placeholders kept, RTL marked."""

from __future__ import annotations

import gettext
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po
from jinja2.ext import babel_extract

from digest.errors import RenderError
from digest.render import RenderContext, personalise, render_issue, template_environment
from digest.render.environment import I18N_EXTENSION, TRIMMED_TRANS, bundled_templates_dir
from digest.render.i18n import (
    LOCALES_DIR,
    available_locales,
    catalog_path,
    compile_po,
    html_lang,
    text_direction,
    translations,
)
from tests.render.sample_issue import sample_issue

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it

EXPECTED_LOCALES = {"ar", "de", "es", "fr", "he", "it", "ja", "nl", "pt"}
EXTRACT_COMMAND = (
    "pybabel extract -F digest/locales/babel.cfg -o digest/locales/digest.pot templates"
)
UPDATE_COMMAND = (
    "pybabel update -i digest/locales/digest.pot -d digest/locales -D digest --ignore-obsolete"
)
# printf-style conversions: %(name)s, %s, %d and the escaped %%
PLACEHOLDER = re.compile(r"%(?:\(\w+\))?[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa%]")

# Punctuation written after a translated label in a template, outside its message: `}}:`
PUNCTUATION_OUTSIDE_MESSAGE = re.compile(
    r"(?:_\(.*?\)\s*\}\}|\{%-?\s*endtrans\s*-?%\})[ \t]*[:;!?]"
)
# French sets a (narrow) no-break space before these marks: "Thèmes : …".
FRENCH_SPACED_MARK = re.compile(r"(?<![\u00a0\u202f])[:;!?]")

MessageKey = tuple[str | tuple[str, ...], str | None]  # (msgid or (singular, plural), context)


@dataclass(frozen=True, slots=True)
class Extracted:
    """One template message: its first "template:line", and its TRANSLATORS: notes."""

    where: str
    notes: tuple[str, ...]


def template_messages(templates: Path) -> dict[MessageKey, Extracted]:
    """What pybabel extracts from `templates` with our babel.cfg, notes merged like pybabel's."""
    with (LOCALES_DIR / "babel.cfg").open(encoding="utf-8") as config:
        method_map, options_map = parse_mapping_cfg(config)
    assert {method for _, method in method_map} == {"jinja2"}, method_map
    jinja_map = [(pattern, babel_extract) for pattern, _ in method_map]
    found: dict[MessageKey, Extracted] = {}
    for filename, lineno, message, comments, context in extract_from_dir(
        str(templates),
        jinja_map,
        options_map,  # type: ignore[arg-type]
    ):
        seen = found.get((message, context), Extracted(f"{filename}:{lineno}", ()))
        notes = seen.notes + tuple(note for note in comments if note not in seen.notes)
        found[(message, context)] = Extracted(seen.where, notes)
    return found


BUNDLED_MESSAGES = template_messages(bundled_templates_dir())


def read_catalog(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as source:
        return read_po(source, locale=locale)


def catalog_entries(catalog: Catalog) -> Iterator[Message]:
    return (message for message in catalog if message.id)


def translated_forms(catalog: Catalog) -> list[str]:
    """Every translation in `catalog`, each plural form on its own."""
    return [
        form
        for message in catalog_entries(catalog)
        for form in (message.string if message.pluralizable else [message.string])
        if form
    ]


def placeholders(text: str) -> list[str]:
    return sorted(PLACEHOLDER.findall(text))


def describe(key: MessageKey) -> str:
    msgid, context = key
    return f"{msgid!r} (context {context!r})" if context else repr(msgid)


def test_the_bundled_templates_hold_translatable_strings():
    assert len(BUNDLED_MESSAGES) >= 10, BUNDLED_MESSAGES


def test_extraction_collects_the_translators_notes():
    # babel.cfg's add_comments: without it the notes never reach a catalog
    assert "when the reader gave none" in " ".join(BUNDLED_MESSAGES[("there", None)].notes)
    assert BUNDLED_MESSAGES[("No. %(number)s", None)].notes


def test_extraction_reads_templates_the_way_the_environment_renders_them():
    with (LOCALES_DIR / "babel.cfg").open(encoding="utf-8") as config:
        _, options_map = parse_mapping_cfg(config)
    env = template_environment()
    for options in options_map.values():
        assert I18N_EXTENSION in options["extensions"].split(",")
        assert options["trimmed"] == str(TRIMMED_TRANS).lower()
        assert options["newstyle_gettext"] == str(env.newstyle_gettext).lower()  # type: ignore[attr-defined]
        assert options["trim_blocks"] == str(env.trim_blocks).lower()
        assert options["lstrip_blocks"] == str(env.lstrip_blocks).lower()


def test_every_expected_language_is_bundled():
    assert set(available_locales()) >= EXPECTED_LOCALES


def test_the_committed_template_catalog_matches_the_templates():
    pot = read_catalog(LOCALES_DIR / "digest.pot")
    committed = {(message.id, message.context) for message in catalog_entries(pot)}
    stale = sorted(map(describe, committed - BUNDLED_MESSAGES.keys()))
    missing = sorted(map(describe, BUNDLED_MESSAGES.keys() - committed))
    assert not missing and not stale, (
        f"digest.pot is out of date (run `{EXTRACT_COMMAND}`): "
        f"missing {missing}, no longer in templates {stale}"
    )


def test_the_template_catalog_carries_the_templates_translator_notes():
    pot = read_catalog(LOCALES_DIR / "digest.pot")
    differ = [
        f"{describe(key)}: {pot.get(*key).auto_comments} in digest.pot, {extracted.notes} in "
        f"{extracted.where}"
        for key, extracted in BUNDLED_MESSAGES.items()
        if pot.get(*key) is not None and tuple(pot.get(*key).auto_comments) != extracted.notes
    ]
    assert not differ, f"run `{EXTRACT_COMMAND}`: " + "; ".join(differ)


@pytest.mark.parametrize("locale", available_locales())
def test_catalogs_carry_the_translator_notes_of_the_template_catalog(locale):
    pot = read_catalog(LOCALES_DIR / "digest.pot")
    catalog = read_catalog(catalog_path(locale), locale)
    differ = [
        repr(message.id)
        for message in catalog_entries(pot)
        if (ours := catalog.get(message.id, context=message.context)) is not None
        and ours.auto_comments != message.auto_comments
    ]
    assert not differ, f"{locale}: run `{UPDATE_COMMAND}`; notes differ for " + ", ".join(differ)


def test_plain_text_templates_keep_punctuation_inside_the_message():
    # "Unsubscribe: %(url)s" lets French write " :" and Japanese "：", `_("Unsubscribe") }}:` not
    outside = [
        f"{template.name}:{number}: {line.strip()}"
        for template in sorted(bundled_templates_dir().glob("*.j2"))
        for number, line in enumerate(template.read_text(encoding="utf-8").splitlines(), 1)
        if PUNCTUATION_OUTSIDE_MESSAGE.search(line)
    ]
    assert not outside, outside


def test_french_translations_put_a_no_break_space_before_colons():
    forms = translated_forms(read_catalog(catalog_path("fr"), "fr"))
    assert any(":" in form for form in forms)
    assert not [form for form in forms if FRENCH_SPACED_MARK.search(form)]


def test_japanese_translations_use_the_full_width_colon():
    forms = translated_forms(read_catalog(catalog_path("ja"), "ja"))
    assert any("：" in form for form in forms)
    assert not [form for form in forms if ":" in form]


@pytest.mark.parametrize("locale", available_locales())
def test_every_template_string_is_translated(locale):
    catalog = read_catalog(catalog_path(locale), locale)
    untranslated = []
    for (msgid, context), extracted in BUNDLED_MESSAGES.items():
        message = catalog.get(msgid, context=context)
        strings = message.string if message is not None else ""
        if (
            message is None
            or message.fuzzy
            or not all(strings if message.pluralizable else [strings])
        ):
            untranslated.append(f"{msgid!r} ({extracted.where})")
    assert not untranslated, f"{locale}: no translation for " + "; ".join(untranslated)


@pytest.mark.parametrize("locale", available_locales())
def test_translations_keep_the_placeholders_of_their_message(locale):
    catalog = read_catalog(catalog_path(locale), locale)
    wrong = []
    for message in catalog_entries(catalog):
        if not message.pluralizable:
            if message.string and placeholders(message.string) != placeholders(message.id):
                wrong.append(f"{message.id!r} → {message.string!r}")
            continue
        allowed = set(placeholders(message.id[0])) | set(placeholders(message.id[1]))
        needed = set(placeholders(message.id[1]))
        for index, form in enumerate(message.string):
            found = set(placeholders(form))
            # The last form is the general one and shows every value; a form for exactly one
            # or two things may spell the number out ("مقالتان") and so drop one placeholder.
            is_general_form = index == len(message.string) - 1
            omitted = len(needed - found)
            if form and (found - allowed or omitted > (0 if is_general_form else 1)):
                wrong.append(f"{message.id[1]!r} form {index} → {form!r}")
    assert not wrong, f"{locale}: placeholders differ in " + "; ".join(wrong)


@pytest.mark.parametrize("locale", available_locales())
def test_catalogs_have_the_plural_forms_their_language_needs(locale):
    catalog = read_catalog(catalog_path(locale), locale)
    needed = get_plural(locale).num_plurals
    assert catalog.num_plurals == needed
    assert catalog.plural_forms == Catalog(locale=locale).plural_forms
    for message in catalog_entries(catalog):
        if message.pluralizable:
            assert len(message.string) == needed, f"{locale}: {message.id!r}"


@pytest.mark.parametrize("locale", available_locales())
def test_catalog_headers_are_not_fuzzy(locale):
    # a fuzzy header is how pybabel marks a catalog nobody has reviewed yet
    assert not read_catalog(catalog_path(locale), locale).fuzzy


def test_regional_tags_fall_back_to_their_language():
    assert translations("pt-BR") is translations("pt")
    assert translations("pt_BR") is translations("pt")
    assert isinstance(translations("de-AT"), gettext.GNUTranslations)
    assert translations("de-AT").gettext("Unsubscribe") == "Abmelden"


def test_english_and_unbundled_languages_read_the_source_strings():
    for locale in ("en", "en-GB", "sw"):
        assert type(translations(locale)) is gettext.NullTranslations
        assert translations(locale).gettext("Unsubscribe") == "Unsubscribe"


@pytest.mark.parametrize("locale", ["xx-unknown", "", "de/../../etc"])
def test_an_unknown_locale_is_a_render_error_naming_it(locale):
    with pytest.raises(RenderError, match=f"^unknown locale {re.escape(repr(locale))}$"):
        translations(locale)


@pytest.mark.parametrize(
    ("locale", "direction"),
    [("ar", "rtl"), ("he", "rtl"), ("fa-IR", "rtl"), ("de", "ltr"), ("ja", "ltr"), ("en", "ltr")],
)
def test_text_direction_follows_the_script(locale, direction):
    assert text_direction(locale) == direction


@pytest.mark.parametrize(("locale", "tag"), [("pt_BR", "pt-BR"), ("pt-BR", "pt-BR"), ("de", "de")])
def test_html_lang_is_a_bcp47_tag(locale, tag):
    assert html_lang(locale) == tag


@pytest.mark.parametrize("locale", available_locales())
def test_compiled_catalogs_choose_among_all_their_plural_forms(locale):
    chosen = {translations(locale).plural(n) for n in range(200)}
    assert chosen == set(range(get_plural(locale).num_plurals))


def test_fuzzy_and_half_translated_entries_fall_back_to_english():
    po = (
        b'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n'
        b'"Plural-Forms: nplurals=2; plural=(n != 1);\\n"\n\n'
        b'#, fuzzy\nmsgid "Read more"\nmsgstr "Mehr lesen"\n\n'
        b'msgid "Unsubscribe"\nmsgstr "Abmelden"\n\n'
        b'msgid "%(count)s story"\nmsgid_plural "%(count)s stories"\n'
        b'msgstr[0] "%(count)s Artikel"\nmsgstr[1] ""\n'
    )
    compiled = compile_po(po, "de")
    assert compiled.gettext("Unsubscribe") == "Abmelden"
    assert compiled.gettext("Read more") == "Read more"
    assert compiled.ngettext("%(count)s story", "%(count)s stories", 1) == "%(count)s story"


def test_a_template_renders_in_german(tmp_path):
    (tmp_path / "x.html.j2").write_text(
        "{% trans %}Unsubscribe{% endtrans %} · {{ _('Unsubscribe') }}", encoding="utf-8"
    )
    html = template_environment(tmp_path, locale="de").get_template("x.html.j2").render()
    assert html == "Abmelden · Abmelden"


@pytest.mark.parametrize(
    ("locale", "heading", "unsubscribe", "view"),
    [
        ("fr", "Dans ce numéro\u00a0:", "Se désabonner\u00a0: ", "Voir dans le navigateur\u00a0: "),
        ("ja", "今号の内容：", "配信停止：", "ブラウザで表示："),
        ("en", "In this issue:", "Unsubscribe: ", "View in browser: "),
    ],
)
def test_plain_text_labels_carry_their_languages_colon(locale, heading, unsubscribe, view):
    context = RenderContext(
        "Demo", "https://d.example", locale=locale, web_url="https://d.example/issues/7"
    )
    rendered = render_issue(
        sample_issue(12),
        template="digest",
        env=template_environment(locale=locale),
        context=context,
    )
    unsubscribe_url = "https://d.example/unsubscribe?t=abc&list=demo"
    _, text = personalise(
        rendered, {"email": "ada@example.com", "unsubscribe_url": unsubscribe_url}
    )
    lines = text.splitlines()
    assert heading in lines
    assert unsubscribe + unsubscribe_url in lines
    assert view + "https://d.example/issues/7" in lines
