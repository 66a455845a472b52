"""Personalisation markers: unforgeable names, one-pass filling, escaping per part."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from digest.errors import RenderError
from digest.render.markers import (
    escape_html,
    fill_markers,
    keep_text,
    marker,
    marker_nonce,
    marker_variables,
)


def test_nonce_is_stable_for_the_same_inputs_and_changes_with_them():
    assert marker_nonce("digest", "a") == marker_nonce("digest", "a")
    assert marker_nonce("digest", "a") != marker_nonce("digest", "b")
    assert len(marker_nonce("x")) == 16


def test_marker_variables_cover_the_personal_fields():
    assert marker_variables("n") == {
        "email": "%%digest-n:email%%",
        "unsubscribe_url": "%%digest-n:unsubscribe_url%%",
        "preferences_url": "%%digest-n:preferences_url%%",
    }


def test_fill_markers_escapes_with_the_given_function():
    page = f'<a href="{marker("n1", "unsubscribe_url")}">x</a>'
    filled = fill_markers(
        page, "n1", {"unsubscribe_url": "https://u.example/?a=1&b=2"}, escape_html
    )
    assert filled == '<a href="https://u.example/?a=1&amp;b=2">x</a>'


def test_markers_of_another_nonce_are_left_alone():
    text = f"{marker('other', 'email')} {marker('mine', 'email')}"
    assert (
        fill_markers(text, "mine", {"email": "a@b.c"}, keep_text)
        == f"{marker('other', 'email')} a@b.c"
    )


def test_a_marker_without_a_value_raises():
    with pytest.raises(RenderError, match="'email'"):
        fill_markers(marker("n", "email"), "n", {}, keep_text)


@given(st.text())
def test_filled_values_are_never_scanned_again(value):
    assert fill_markers(marker("n", "email"), "n", {"email": value}, keep_text) == value
