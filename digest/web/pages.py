"""Rendering the public pages: templates/web/ and the headers every page carries."""

from __future__ import annotations

import jinja2
from fastapi.responses import HTMLResponse

from digest.render.environment import bundled_templates_dir

# Pages carry a token in their URL: keep them out of caches, search engines and Referer headers.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}


class Pages:
    """Renders `templates/web/<name>` into an HTML response; every page names the publication."""

    def __init__(self, publication: str) -> None:
        self.publication = publication
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(bundled_templates_dir()),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )

    def render(self, template: str, status_code: int = 200, **context: object) -> HTMLResponse:
        html = self._env.get_template(f"web/{template}").render(
            publication=self.publication, **context
        )
        return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)

    def error(self, status_code: int, message: str, **context: object) -> HTMLResponse:
        """The 'that did not work' page with a one-line explanation."""
        context.setdefault("title", "Something is wrong")
        context.setdefault("next_link", None)
        return self.render("error.html", status_code, message=message, **context)
