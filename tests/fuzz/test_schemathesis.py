"""Schemathesis against the app's own OpenAPI description: no request it describes gets a 500,
and every answer it documents matches its schema.

The app publishes no spec (openapi_url=None); FastAPI still builds one (`app.openapi()`), and
the routes that read their form or body by hand declare it there (`openapi_extra`). The app is
the whole site `digest serve` runs: subscriber pages, webhook, archive and the editor's pages,
called over ASGI with the editor's session cookie; a generated form's CSRF field is swapped
for the browser's own, so generated forms also get past that check to the code behind it.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import given, note, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.fuzz.hostile import FUZZ
from tests.fuzz.site import WholeSite, shared_site
from tests.web.public_site import csrf_token

__all__ = ["shared_site"]


@pytest.fixture(scope="module")
def web_schema(shared_site: WholeSite) -> schemathesis.BaseSchema:
    config = SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": False}}})
    loaded = schemathesis.openapi.from_dict(shared_site.app.openapi(), config=config)
    loaded.app = shared_site.app
    return loaded


def test_every_form_route_describes_its_body(web_schema: schemathesis.BaseSchema) -> None:
    """A POST route that reads its form by hand is visible to Schemathesis only through the
    body its OpenAPI declares."""
    posts = [
        (path, operations["post"])
        for path, operations in web_schema.raw_schema["paths"].items()
        if "post" in operations
    ]
    assert len(posts) == 12
    assert [path for path, operation in posts if "requestBody" not in operation] == []


def test_no_described_request_gets_a_500(
    web_schema: schemathesis.BaseSchema, shared_site: WholeSite
) -> None:
    """Every operation of the spec, fuzzed: no 500, every documented answer as documented.

    Each operation gets its own Hypothesis run from `as_strategy()`, so this does not depend
    on Schemathesis's pytest plugin (which follows pytest's internals release by release).
    """
    site = shared_site
    operations = [result.ok() for result in web_schema.get_all_operations()]
    assert len(operations) >= 28  # every route of the site is in the description

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(FUZZ, max_examples=8)
        def answers_without_a_500(case: schemathesis.Case) -> None:
            note(f"operation: {case.operation.label}")
            if isinstance(case.body, dict) and "csrf_token" in case.body:
                # The editor's pages and the public ones sign their fields differently.
                page = "/editor/login" if case.path.startswith("/editor") else "/subscribe"
                case.body["csrf_token"] = csrf_token(site.editor.get(page).text)
            case.call_and_validate(
                base_url="https://testserver",
                cookies=dict(site.editor.cookies.items()),
                checks=[not_a_server_error, response_schema_conformance],
            )
            if case.path == "/editor/logout":
                site.log_editor_in()  # a generated logout may have ended the session

        answers_without_a_500()


@pytest.mark.parametrize("issue_id", [2**31, 2**63, -(2**63) - 1, 0])
@pytest.mark.parametrize(
    "method,path",
    [("GET", "/issues/{}"), ("GET", "/editor/issues/{}"), ("GET", "/editor/issues/{}/email"),
     ("POST", "/editor/issues/{}/edit"), ("POST", "/editor/issues/{}/cancel")],
)  # fmt: skip
def test_issue_ids_no_column_holds_are_refused_not_a_500(
    shared_site: WholeSite, method: str, path: str, issue_id: int
) -> None:
    """The boundary values the fuzzing phase may miss: past SQLite's 64-bit INTEGER the
    driver raised OverflowError (a 500); every id outside 1..2**31-1 is now a 422."""
    answer = shared_site.editor.request(method, path.format(issue_id))
    assert answer.status_code == 422, answer.text
