"""Fixtures shared by the render tests: the bundled environment and a render context."""

from __future__ import annotations

import jinja2
import pytest

from digest.render import RenderContext, template_environment


@pytest.fixture(scope="session")
def env() -> jinja2.Environment:
    return template_environment()


@pytest.fixture
def context() -> RenderContext:
    return RenderContext(publication="Demo Digest", base_url="https://digest.example.org")


@pytest.fixture
def recipient() -> dict[str, str]:
    return {
        "email": "ada@example.com",
        "unsubscribe_url": "https://digest.example.org/unsubscribe?t=abc.def&list=demo",
        "preferences_url": "https://digest.example.org/preferences?t=abc.def",
    }
