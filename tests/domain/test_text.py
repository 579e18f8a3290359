"""Text rules: characters after NFC, forbidden code points, blank text."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley.domain.text import MAX_TEXT_CHARACTERS, normalize_text
from parley.errors import BadRequest
from tests.e2e.conftest import texts


@pytest.mark.parametrize("case", texts(), ids=lambda case: case["id"])
def test_the_shared_texts_get_their_verdicts(case: dict):
    """Accepted texts keep their NFC length; refused ones raise or are empty."""
    try:
        stored = normalize_text(case["text"])
    except BadRequest:
        stored = None

    if case["verdict"] == "accept":
        assert stored is not None and len(stored) == case["characters_after_nfc"]
    else:
        assert stored is None


def test_two_thousand_emoji_are_allowed_and_one_more_is_not():
    assert normalize_text("\U0001f600" * 2000) == "\U0001f600" * 2000
    with pytest.raises(BadRequest) as refused:
        normalize_text("\U0001f600" * 2001)
    assert refused.value.code == "text_too_long"


@pytest.mark.parametrize(
    "char", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\ud800", "\udfff"]
)
def test_control_characters_and_lone_surrogates_are_refused(char: str):
    with pytest.raises(BadRequest) as refused:
        normalize_text(f"a{char}b")
    assert refused.value.code == "text_invalid"


def test_newline_and_tab_are_allowed():
    assert normalize_text("a\nb\tc") == "a\nb\tc"


def test_a_string_is_required():
    with pytest.raises(BadRequest) as refused:
        normalize_text(42)  # type: ignore[arg-type]
    assert refused.value.code == "invalid_field"


@given(
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=2500)
)
def test_any_valid_text_is_stored_in_nfc_or_refused_for_length(text: str):
    """Property: the result is NFC and within the limit, or the refusal is length."""
    try:
        stored = normalize_text(text)
    except BadRequest as refused:
        assert refused.code == "text_too_long"
        assert len(unicodedata.normalize("NFC", text)) > MAX_TEXT_CHARACTERS
        return
    if stored is not None:
        assert unicodedata.is_normalized("NFC", stored)
        assert len(stored) <= MAX_TEXT_CHARACTERS
