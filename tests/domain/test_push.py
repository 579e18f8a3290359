"""When to push, how long to wait after a failure, and which addresses to take."""

from __future__ import annotations

import dataclasses

import pytest

from parley.domain.push import (
    DEFAULT_WEBPUSH_HOSTS,
    Decision,
    PushJob,
    PushKind,
    backoff_s,
    check_push_address,
    decide,
)
from parley.errors import BadRequest

JOB = PushJob(
    user_id="bob",
    device_id="phone",
    chat_id=7,
    kind=PushKind.NOTIFY,
    seq=5,
    queued_at_ms=0,
    attempts=0,
    service="apns",
    token="ab" * 32,
    p256dh=None,
    auth=None,
    chat_title=None,
    sender_id="alice",
    text="hi",
    read_seq=2,
    visible_last=5,
    active=True,
    muted=False,
)


def test_an_offline_device_with_unread_messages_is_pushed():
    assert decide(JOB, device_live=False) == (Decision.SEND, "unread")
    assert JOB.unread_count == 3


@pytest.mark.parametrize(
    "changes, live, reason",
    [
        ({}, True, "device_live"),
        ({"muted": True}, False, "muted_or_left"),
        ({"active": False}, False, "muted_or_left"),
        ({"read_seq": 5}, False, "already_read"),
    ],
)
def test_no_push_for_a_live_device_a_muted_chat_or_a_read_message(
    changes, live, reason
):
    job = dataclasses.replace(JOB, **changes)
    assert decide(job, device_live=live) == (Decision.DROP, reason)


def test_a_withdrawal_is_always_sent():
    job = dataclasses.replace(JOB, kind=PushKind.WITHDRAW, read_seq=5)
    assert decide(job, device_live=True)[0] is Decision.SEND


def test_retries_back_off_exponentially_and_honour_the_service():
    assert [backoff_s(n, None) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff_s(30, None) == 300.0
    assert backoff_s(1, 42.0) == 42.0


def test_push_addresses_are_checked_per_service():
    apns = check_push_address("apns", "AB" * 32, None, None, allowed_hosts=())
    assert apns.token == "ab" * 32
    webpush = check_push_address(
        "webpush",
        "https://updates.push.services.mozilla.com/wpush/v2/abc",
        "B" * 87,
        "a" * 22,
        allowed_hosts=DEFAULT_WEBPUSH_HOSTS,
    )
    assert webpush.service == "webpush"


@pytest.mark.parametrize(
    "service, token",
    [
        ("sms", "123"),
        ("apns", "not-hex"),
        ("fcm", "has spaces"),
        ("webpush", "http://updates.push.services.mozilla.com/x"),
        ("webpush", "https://169.254.169.254/latest/meta-data"),
        ("webpush", "https://evil.example/push"),
        ("webpush", "https://fcm.googleapis.com.evil.example/x"),
        ("webpush", "https://fcm.google\tapis.com/x"),
        ("webpush", "https://fcm.googleapis.com/x\r\nX-Evil: 1"),
        ("webpush", "https://user:pass@fcm.googleapis.com/x"),
    ],
)
def test_unknown_services_bad_tokens_and_foreign_endpoints_are_refused(service, token):
    """A Web Push endpoint is a URL the server posts to: only known services."""
    with pytest.raises(BadRequest) as refused:
        check_push_address(
            service, token, "B" * 87, "a" * 22, allowed_hosts=DEFAULT_WEBPUSH_HOSTS
        )
    assert refused.value.code == "invalid_push_address"
