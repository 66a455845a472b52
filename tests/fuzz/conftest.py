"""Fuzz test set-up: a failing example is reported as itself, not as an internal error.

The hypothesis profile the tests run under ("fuzz") lives in tests/fuzz/hostile.py.
"""

from __future__ import annotations

import contextlib
import warnings

# On a failure hypothesis imports libcst to suggest a patch, and that import warns; under
# filterwarnings=error the warning would replace the report of the failure with an internal error.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    with contextlib.suppress(ImportError):
        import hypothesis.extra._patching  # noqa: F401
