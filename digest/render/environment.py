"""The Jinja environment: where templates are found, how they escape, what they can call."""

from __future__ import annotations

from pathlib import Path

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from digest.render.filters import FILTERS
from digest.render.i18n import translations

# Text templates (`digest.txt.j2`) are the only ones rendered without HTML escaping.
_PLAIN_TEXT_SUFFIXES = (".txt", ".text")
_JINJA_SUFFIXES = (".j2", ".jinja", ".jinja2")

# Must match digest/locales/babel.cfg, or extracted msgids would differ from rendered ones.
I18N_EXTENSION = "jinja2.ext.i18n"
# `{% trans %}` blocks lose their line breaks and indentation: translators see one clean line.
TRIMMED_TRANS = True


def bundled_templates_dir() -> Path:
    """Default templates: digest/_templates in an installed wheel, else <repo>/templates."""
    package_dir = Path(__file__).resolve().parents[1]
    installed = package_dir / "_templates"
    return installed if installed.is_dir() else package_dir.parent / "templates"


def is_html_template(name: str | None) -> bool:
    """Autoescape everything except plain-text templates; a string template counts as HTML."""
    if name is None:
        return True
    base = name.lower()
    for suffix in _JINJA_SUFFIXES:
        base = base.removesuffix(suffix)
    return not base.endswith(_PLAIN_TEXT_SUFFIXES)


def template_environment(user_dir: Path | None = None, locale: str = "en") -> jinja2.Environment:
    """Templates from `user_dir` first (when it exists), then the bundled ones, in `locale`.

    Sandboxed because an operator's templates should not reach Python internals; strict
    because a misspelt variable must fail the render, not vanish from the email.
    """
    search_path = [bundled_templates_dir()]
    if user_dir is not None and user_dir.is_dir():
        search_path.insert(0, user_dir)
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(search_path),
        autoescape=is_html_template,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[I18N_EXTENSION],
    )
    env.policies["ext.i18n.trimmed"] = TRIMMED_TRANS
    # newstyle: `_()` and `{% trans %}` escape their variables and format `%(name)s` themselves.
    env.install_gettext_translations(translations(locale), newstyle=True)  # type: ignore[attr-defined]
    env.filters.update(FILTERS)
    return env
