"""What a notification shows, and how a service's delay is read, without sockets."""

from __future__ import annotations

import email.utils

import pytest

from parley.push import PREVIEW_LIMIT_CHARS, Notification, PushAddress
from parley.push.outcomes import retry_after_s


def _notification(body: str | None, unread_count: int = 1) -> Notification:
    return Notification("chat-42", "Ada", body, unread_count, {})


def test_a_short_message_is_shown_whole() -> None:
    """Text within the preview limit reaches the device unchanged."""
    assert _notification("Lunch at noon?").shown_body == "Lunch at noon?"


def test_a_long_message_is_cut_to_a_preview_with_an_ellipsis() -> None:
    """A long text is cut so that every service's 4 KiB payload has room."""
    shown = _notification("é" * 2000).shown_body

    assert len(shown) == PREVIEW_LIMIT_CHARS
    assert shown.endswith("…")
    assert len(shown.encode()) < 1024


@pytest.mark.parametrize(
    ("unread_count", "shown"),
    [(1, "1 new message"), (3, "3 new messages")],
    ids=["one", "several"],
)
def test_hidden_text_is_shown_as_a_count(unread_count: int, shown: str) -> None:
    """When the setting hides text, the body counts the unread messages."""
    assert _notification(None, unread_count).shown_body == shown


def test_a_device_is_named_in_logs_by_a_fingerprint_not_its_token() -> None:
    """The fingerprint is short, stable, and does not contain the token."""
    address = PushAddress("apns", "5e" * 32)

    assert address.fingerprint == PushAddress("apns", "5e" * 32).fingerprint
    assert len(address.fingerprint) == 12
    assert address.fingerprint not in address.token


@pytest.mark.parametrize(
    ("header", "delay_s"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        (email.utils.formatdate(1_000_090, usegmt=True), 90.0),
        (email.utils.formatdate(999_000, usegmt=True), 0.0),
        ("soon", None),
    ],
    ids=["absent", "empty", "seconds", "a date ahead", "a date past", "nonsense"],
)
def test_retry_after_is_read_as_seconds_or_a_date(
    header: str | None, delay_s: float | None
) -> None:
    """Retry-After is a delay in seconds or an HTTP date (RFC 9110 section 10.2.3)."""
    assert retry_after_s(header, now_s=1_000_000) == delay_s
