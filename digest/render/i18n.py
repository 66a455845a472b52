"""Translations for the templates: which catalog a locale reads, and its writing direction."""

from __future__ import annotations

import gettext
from functools import cache, lru_cache
from io import BytesIO
from pathlib import Path
from typing import Literal

from babel import Locale, UnknownLocaleError
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from digest.errors import RenderError

# Catalogs ship as .po sources only; they are compiled in memory on first use.
LOCALES_DIR = Path(__file__).resolve().parents[1] / "locales"
DOMAIN = "digest"


def parse_locale(locale: str) -> Locale:
    """Babel's Locale for a BCP 47 ("pt-BR") or Babel ("pt_BR") tag; RenderError if unknown."""
    try:
        return Locale.parse(locale.replace("-", "_"))
    except (UnknownLocaleError, ValueError) as error:
        raise RenderError(f"unknown locale {locale!r}") from error


@lru_cache(maxsize=128)
def translations(locale: str) -> Translations | gettext.NullTranslations:
    """The closest bundled catalog (pt_BR, then pt), else the English source strings."""
    for identifier in _fallback_chain(parse_locale(locale)):
        if identifier in available_locales():
            return _compiled_catalog(identifier)
    return gettext.NullTranslations()


def text_direction(locale: str) -> Literal["ltr", "rtl"]:
    """`dir` for <html>: "rtl" for Arabic, Hebrew and the other right-to-left scripts."""
    return "rtl" if parse_locale(locale).character_order == "right-to-left" else "ltr"


def html_lang(locale: str) -> str:
    """The BCP 47 tag for <html lang>: "pt_BR" → "pt-BR"."""
    return str(parse_locale(locale)).replace("_", "-")


@lru_cache(maxsize=1)
def available_locales() -> tuple[str, ...]:
    """Babel identifiers of the bundled catalogs, sorted ("ar", "de", …)."""
    return tuple(
        sorted(po.parent.parent.name for po in LOCALES_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))
    )


def catalog_path(identifier: str) -> Path:
    """Where the .po source of a bundled catalog lives."""
    return LOCALES_DIR / identifier / "LC_MESSAGES" / f"{DOMAIN}.po"


def _fallback_chain(locale: Locale) -> list[str]:
    """Most specific first: zh_Hant_TW → zh_Hant → zh_TW → zh."""
    candidates = [
        str(locale),
        "_".join(filter(None, (locale.language, locale.script))),
        "_".join(filter(None, (locale.language, locale.territory))),
        locale.language,
    ]
    return list(dict.fromkeys(candidates))


def compile_po(po_source: bytes, locale: str) -> Translations:
    """A .po file's text as gettext Translations, compiled in memory; fuzzy entries are left out."""
    catalog = read_po(BytesIO(po_source), locale=locale, domain=DOMAIN, ignore_obsolete=True)
    _drop_incomplete_plurals(catalog)
    compiled = BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)  # fuzzy entries are guesses, not translations
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


@cache
def _compiled_catalog(identifier: str) -> Translations:
    return compile_po(catalog_path(identifier).read_bytes(), identifier)


def _drop_incomplete_plurals(catalog: Catalog) -> None:
    # write_mo would fill a missing plural form with the English msgid, mixing two languages
    # in one sentence; the whole English message reads better.
    incomplete = [
        message
        for message in catalog
        if message.id and message.pluralizable and not all(message.string)
    ]
    for message in incomplete:
        catalog.delete(message.id, context=message.context)
