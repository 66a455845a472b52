"""Fixtures for the security tests (built in tests/security/site.py)."""

from tests.security.site import full_site
from tests.web.public_site import site

__all__ = ["full_site", "site"]
