"""Fixtures for the web tests (built in tests/web/public_site.py)."""

from tests.web.public_site import site

__all__ = ["site"]
