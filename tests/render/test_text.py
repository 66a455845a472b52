"""tidy_text: the plain-text part's whitespace rules."""

import pytest

from digest.render import render_issue
from digest.render.text import tidy_text
from tests.render.sample_issue import sample_issue

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it


def test_tidy_text_trims_lines_and_collapses_blank_runs():
    assert tidy_text("\n\nTitle  \r\n\n\n\nBody \n\n") == "Title\n\nBody\n"


def test_bundled_text_template_keeps_lines_within_80_columns(env, context):
    rendered = render_issue(sample_issue(10), template="digest", env=env, context=context)
    long_lines = [line for line in rendered.text.splitlines() if len(line) > 80]
    assert all("://" in line or "%%digest-" in line for line in long_lines)
    assert rendered.text.rstrip().endswith(
        f"Unsubscribe: %%digest-{rendered.nonce}:unsubscribe_url%%"
    )
