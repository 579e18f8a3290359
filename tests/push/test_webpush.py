"""The Web Push sender against a fake push service that decrypts like a browser."""

from __future__ import annotations

import base64
import ssl
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from parley.push import Notification, Outcome, PushAddress, PushResult
from parley.push.webpush import WebPushService
from tests.push.fakes import VAPID_SUBJECT, FakeClock, FakeWebPush

ALERT = Notification(
    collapse_key="chat-42",
    title="Ada",
    body="Lunch at noon?",
    unread_count=3,
    data={"chat_id": "42", "seq": "17", "kind": "message"},
)
WITHDRAW = replace(ALERT, withdraw=True, unread_count=0)


@pytest.fixture
def browser(webpush: WebPushService, fake_webpush: FakeWebPush) -> PushAddress:
    return fake_webpush.subscribe(webpush.application_server_key)


async def test_an_alert_decrypts_to_title_body_and_count_for_the_browser(
    webpush: WebPushService, fake_webpush: FakeWebPush, browser: PushAddress
) -> None:
    """The browser decrypts the alert, and the headers carry TTL, urgency, topic."""
    result = await webpush.send(browser, ALERT)

    assert result == PushResult(Outcome.DELIVERED, 201, "")
    [request] = fake_webpush.received
    assert request.message == {
        "title": "Ada",
        "body": "Lunch at noon?",
        "tag": "chat-42",
        "unread_count": 3,
        "data": {"chat_id": "42", "seq": "17", "kind": "message"},
    }
    assert request.headers["ttl"] == "86400"
    assert request.headers["urgency"] == "high"
    assert request.headers["topic"] == "chat-42"
    assert request.headers["content-encoding"] == "aes128gcm"
    assert request.vapid_claims["aud"] == fake_webpush.url
    assert request.vapid_claims["sub"] == VAPID_SUBJECT


async def test_a_withdraw_decrypts_to_the_key_of_the_notification_to_remove(
    webpush: WebPushService, fake_webpush: FakeWebPush, browser: PushAddress
) -> None:
    """A withdraw names the collapsed notification and replaces it by topic."""
    result = await webpush.send(browser, WITHDRAW)

    assert result.outcome is Outcome.DELIVERED
    [request] = fake_webpush.received
    assert request.message == {
        "withdraw": "chat-42",
        "unread_count": 0,
        "data": {"chat_id": "42", "seq": "17", "kind": "message"},
    }
    assert request.headers["urgency"] == "normal"
    assert request.headers["topic"] == "chat-42"


async def test_hidden_text_shows_a_count_and_is_nowhere_in_the_plaintext(
    webpush: WebPushService, fake_webpush: FakeWebPush, browser: PushAddress
) -> None:
    """With text hidden the decrypted message holds a count and never the text."""
    result = await webpush.send(browser, replace(ALERT, body=None))

    assert result.outcome is Outcome.DELIVERED
    [request] = fake_webpush.received
    assert request.message["body"] == "3 new messages"
    assert b"Lunch" not in request.plaintext


async def test_an_unsubscribed_browser_is_gone(
    webpush: WebPushService, fake_webpush: FakeWebPush, browser: PushAddress
) -> None:
    """410 from the push service tells the caller to delete the subscription."""
    fake_webpush.unsubscribe(browser)

    result = await webpush.send(browser, ALERT)

    assert result == PushResult(Outcome.GONE, 410, "Gone")


async def test_an_endpoint_the_push_service_does_not_know_is_gone(
    webpush: WebPushService, fake_webpush: FakeWebPush, browser: PushAddress
) -> None:
    """404 from the push service also means the subscription is gone."""
    unknown = replace(browser, token=f"{fake_webpush.url}/wpush/v2/nobody")

    result = await webpush.send(unknown, ALERT)

    assert result == PushResult(Outcome.GONE, 404, "Not Found")


async def test_an_endpoint_that_is_not_https_is_gone_without_a_request(
    webpush: WebPushService, fake_webpush: FakeWebPush, browser: PushAddress
) -> None:
    """Only https endpoints are pushed to; anything else is a useless address."""
    plain = replace(browser, token=browser.token.replace("https:", "http:"))

    result = await webpush.send(plain, ALERT)

    assert result == PushResult(Outcome.GONE, None, "InvalidEndpoint")
    assert fake_webpush.received == [] and fake_webpush.refusals == []


@pytest.mark.parametrize(
    ("status", "reason"),
    [(429, "Too Many Requests"), (503, "Service Unavailable")],
    ids=["throttled", "unavailable"],
)
async def test_throttling_or_an_outage_asks_for_a_retry_after_the_given_delay(
    webpush: WebPushService,
    fake_webpush: FakeWebPush,
    browser: PushAddress,
    status: int,
    reason: str,
) -> None:
    """429 and 503 are transient: retry, after the push service's Retry-After."""
    fake_webpush.fail_next(status, reason, retry_after_s=120)

    result = await webpush.send(browser, ALERT)

    assert result == PushResult(Outcome.RETRY, status, reason, 120.0)


async def test_the_vapid_token_is_reused_and_renewed_after_an_hour(
    webpush: WebPushService,
    fake_webpush: FakeWebPush,
    browser: PushAddress,
    clock: FakeClock,
) -> None:
    """One VAPID token serves a push service for an hour, then a new one."""
    for _ in range(3):
        assert (await webpush.send(browser, ALERT)).outcome is Outcome.DELIVERED
    assert len(fake_webpush.vapid_tokens) == 1

    clock.advance(61 * 60)
    assert (await webpush.send(browser, ALERT)).outcome is Outcome.DELIVERED

    assert len(fake_webpush.vapid_tokens) == 2


async def test_a_collapse_key_that_cannot_be_a_topic_is_digested_into_one(
    webpush: WebPushService, fake_webpush: FakeWebPush, browser: PushAddress
) -> None:
    """A key too long or with other characters becomes the same valid topic."""
    long_key = replace(ALERT, collapse_key="chat:7f3c2e0a-0000-4000-8000-000000000042")

    await webpush.send(browser, long_key)
    await webpush.send(browser, replace(long_key, withdraw=True))

    first, second = fake_webpush.received
    assert len(first.headers["topic"]) == 32
    assert first.headers["topic"] == second.headers["topic"]


async def test_a_payload_over_four_kilobytes_is_rejected_without_a_request(
    webpush: WebPushService, fake_webpush: FakeWebPush, browser: PushAddress
) -> None:
    """A message that could not fit one record is refused before it is sent."""
    bulky = replace(ALERT, data={"kind": "message", "extra": "x" * 5000})

    result = await webpush.send(browser, bulky)

    assert result == PushResult(Outcome.REJECTED, None, "PayloadTooLarge")
    assert fake_webpush.received == [] and fake_webpush.refusals == []


async def test_a_subscription_made_for_another_server_key_is_refused(
    fake_webpush: FakeWebPush,
    client_tls: ssl.SSLContext,
    clock: FakeClock,
    browser: PushAddress,
) -> None:
    """The push service checks the VAPID key against the subscription's own."""
    other_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    other = WebPushService(
        vapid_private_key=other_pem,
        subject=VAPID_SUBJECT,
        verify=client_tls,
        timeout_s=5.0,
        clock=clock,
    )

    await other.start()
    result = await other.send(browser, ALERT)
    await other.stop()

    assert result == PushResult(Outcome.REJECTED, 403, "Forbidden")


def test_a_vapid_key_in_base64_serves_as_well_as_its_pem(vapid_key_pem: str) -> None:
    """The raw private key in base64url gives the same application server key."""
    key = serialization.load_pem_private_key(vapid_key_pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    raw = key.private_numbers().private_value.to_bytes(32, "big")
    raw_b64 = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    from_pem = WebPushService(vapid_private_key=vapid_key_pem, subject=VAPID_SUBJECT)
    from_raw = WebPushService(vapid_private_key=raw_b64, subject=VAPID_SUBJECT)

    assert from_raw.application_server_key == from_pem.application_server_key


def test_a_subject_that_is_no_contact_is_refused_at_start_up(
    vapid_key_pem: str,
) -> None:
    """RFC 8292 asks for a mailto: or https: contact; anything else is refused."""
    with pytest.raises(ValueError, match="contact"):
        WebPushService(vapid_private_key=vapid_key_pem, subject="ops team")
