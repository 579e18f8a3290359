"""What a message may say: text normalisation and the character limit."""

from __future__ import annotations

import re
import unicodedata

from parley.errors import BadRequest

MAX_TEXT_CHARACTERS = 2000

# Control characters (Unicode category Cc) other than tab and newline, and
# surrogates, which cannot stand alone in valid text.
_FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def normalize_text(text: str | None, *, limit: int = MAX_TEXT_CHARACTERS) -> str | None:
    """Return the text as stored (NFC), or None when there is nothing to say.

    A character is a Unicode code point after NFC normalisation. Text that is
    only whitespace counts as no text at all.
    """
    if text is None:
        return None
    if not isinstance(text, str):
        raise BadRequest("invalid_field", "Field 'text' must be a string.")

    _refuse_invalid_code_points(text)
    text = unicodedata.normalize("NFC", text)

    if len(text) > limit:
        raise BadRequest(
            "text_too_long",
            f"Text is {len(text)} characters after NFC; the limit is {limit}.",
        )
    if not text.strip():
        return None
    return text


def _refuse_invalid_code_points(text: str) -> None:
    found = _FORBIDDEN.search(text)
    if found is None:
        return

    char = found.group()
    if "\ud800" <= char <= "\udfff":
        raise BadRequest(
            "text_invalid",
            f"Text holds a lone surrogate at position {found.start()}; "
            "it is not valid Unicode.",
        )
    raise BadRequest(
        "text_invalid",
        f"Text holds control character U+{ord(char):04X} at position "
        f"{found.start()}; only newline and tab are allowed.",
    )
