"""The FCM sender against a fake token endpoint and v1 API: messages, outcomes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from parley.push import Notification, Outcome, PushAddress, PushResult
from parley.push.fcm import FcmService
from tests.push.fakes import FakeFcm, unused_port

ALERT = Notification(
    collapse_key="chat-42",
    title="Ada",
    body="Lunch at noon?",
    unread_count=3,
    data={"chat_id": "42", "seq": "17", "kind": "message"},
)
WITHDRAW = replace(ALERT, withdraw=True, unread_count=0)


@pytest.fixture
def device(fake_fcm: FakeFcm) -> PushAddress:
    return PushAddress("fcm", fake_fcm.register())


async def test_an_alert_shows_title_body_and_count_and_collapses_by_chat(
    fcm: FcmService, fake_fcm: FakeFcm, device: PushAddress
) -> None:
    """An alert is a notification message with the count, tag and collapse key."""
    result = await fcm.send(device, ALERT)

    assert result == PushResult(Outcome.DELIVERED, 200, "")
    assert fake_fcm.received == [
        {
            "token": device.token,
            "notification": {"title": "Ada", "body": "Lunch at noon?"},
            "data": {"chat_id": "42", "seq": "17", "kind": "message"},
            "android": {
                "collapse_key": "chat-42",
                "priority": "high",
                "ttl": "86400s",
                "notification": {"tag": "chat-42", "notification_count": 3},
            },
            "apns": {
                "headers": {"apns-priority": "10", "apns-collapse-id": "chat-42"},
                "payload": {"aps": {"badge": 3, "thread-id": "chat-42"}},
            },
        }
    ]


async def test_a_withdraw_is_a_data_message_naming_the_notification(
    fcm: FcmService, fake_fcm: FakeFcm, device: PushAddress
) -> None:
    """A withdraw carries data alone: nothing to show, the key to remove."""
    result = await fcm.send(device, WITHDRAW)

    assert result.outcome is Outcome.DELIVERED
    [message] = fake_fcm.received
    assert "notification" not in message
    assert message["data"] == {
        "chat_id": "42",
        "seq": "17",
        "kind": "message",
        "withdraw": "chat-42",
        "unread_count": "0",
    }
    assert message["android"] == {
        "collapse_key": "chat-42",
        "priority": "normal",
        "ttl": "86400s",
    }
    assert message["apns"]["headers"]["apns-push-type"] == "background"
    assert message["apns"]["payload"] == {"aps": {"content-available": 1}}


async def test_hidden_text_shows_a_count_and_never_goes_on_the_wire(
    fcm: FcmService, fake_fcm: FakeFcm, device: PushAddress
) -> None:
    """With text hidden the device shows a count, and no byte sent holds the text."""
    result = await fcm.send(device, replace(ALERT, body=None))

    assert result.outcome is Outcome.DELIVERED
    [message] = fake_fcm.received
    assert message["notification"] == {"title": "Ada", "body": "3 new messages"}
    assert b"Lunch" not in fake_fcm.bodies[0]


async def test_an_unregistered_token_is_gone(
    fcm: FcmService, fake_fcm: FakeFcm, device: PushAddress
) -> None:
    """404 with the UNREGISTERED error code tells the caller to delete the token."""
    fake_fcm.unregister(device.token)

    result = await fcm.send(device, ALERT)

    assert result == PushResult(Outcome.GONE, 404, "UNREGISTERED")


async def test_a_malformed_token_is_gone(fcm: FcmService, fake_fcm: FakeFcm) -> None:
    """INVALID_ARGUMENT about the registration token means the token is useless."""
    result = await fcm.send(PushAddress("fcm", "not a token"), ALERT)

    assert result == PushResult(Outcome.GONE, 400, "INVALID_ARGUMENT")


async def test_an_invalid_message_is_rejected_and_the_token_kept(
    fcm: FcmService, fake_fcm: FakeFcm, device: PushAddress
) -> None:
    """INVALID_ARGUMENT about the message, not the token, drops the notification."""
    reserved = replace(ALERT, data={"from": "someone"})

    result = await fcm.send(device, reserved)

    assert result == PushResult(Outcome.REJECTED, 400, "INVALID_ARGUMENT")
    [refusal] = fake_fcm.refusals
    assert refusal.violations == [("message.data[from]", "Reserved data key.")]


@pytest.mark.parametrize(
    ("status", "code"),
    [(429, "QUOTA_EXCEEDED"), (503, "UNAVAILABLE")],
    ids=["throttled", "unavailable"],
)
async def test_throttling_or_an_outage_asks_for_a_retry_after_the_given_delay(
    fcm: FcmService, fake_fcm: FakeFcm, device: PushAddress, status: int, code: str
) -> None:
    """429 and 503 are transient: retry, after FCM's Retry-After."""
    fake_fcm.fail_next(status, code, retry_after_s=60)

    result = await fcm.send(device, ALERT)

    assert result == PushResult(Outcome.RETRY, status, code, 60.0)


async def test_one_access_token_serves_many_sends(
    fcm: FcmService, fake_fcm: FakeFcm, device: PushAddress
) -> None:
    """The OAuth access token is minted once and reused while it is fresh."""
    for _ in range(3):
        assert (await fcm.send(device, ALERT)).outcome is Outcome.DELIVERED

    assert len(fake_fcm.access_tokens) == 1


async def test_an_access_token_about_to_expire_is_replaced_before_the_send(
    fcm: FcmService, fake_fcm: FakeFcm, device: PushAddress
) -> None:
    """A token within minutes of expiry is not used: a new one is minted."""
    fake_fcm.access_token_lifetime_s = 60

    for _ in range(2):
        assert (await fcm.send(device, ALERT)).outcome is Outcome.DELIVERED

    assert len(fake_fcm.access_tokens) == 2


async def test_a_revoked_access_token_asks_for_a_retry_with_a_new_token(
    fcm: FcmService, fake_fcm: FakeFcm, device: PushAddress
) -> None:
    """A 401 without an FCM error code drops the token; the retry mints another."""
    assert (await fcm.send(device, ALERT)).outcome is Outcome.DELIVERED
    fake_fcm.revoke_access_tokens()

    refused = await fcm.send(device, ALERT)
    retried = await fcm.send(device, ALERT)

    assert refused == PushResult(Outcome.RETRY, 401, "UNAUTHENTICATED")
    assert retried.outcome is Outcome.DELIVERED
    assert len(fake_fcm.access_tokens) == 2


async def test_a_service_account_key_google_does_not_know_is_rejected(
    fcm: FcmService, fake_fcm: FakeFcm, device: PushAddress
) -> None:
    """When the token endpoint refuses the account's grant, the send is refused."""
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fake_fcm.public_key = other_key.public_key()

    result = await fcm.send(device, ALERT)

    assert result == PushResult(Outcome.REJECTED, None, "oauth_refused")
    assert fake_fcm.received == []


async def test_the_grant_names_the_token_endpoint_and_the_messaging_scope(
    fcm: FcmService, fake_fcm: FakeFcm, device: PushAddress
) -> None:
    """The fake accepted the JWT-bearer grant: audience, issuer, scope, signature."""
    await fcm.send(device, ALERT)

    [grant] = fake_fcm.grants
    assert grant["aud"] == fake_fcm.token_uri
    assert grant["scope"] == "https://www.googleapis.com/auth/firebase.messaging"


async def test_an_unreachable_token_endpoint_asks_for_a_retry(
    fake_fcm: FakeFcm, device: PushAddress, service_account_path: Path, tmp_path: Path
) -> None:
    """When no access token can be had for now, the send is retried later."""
    account = json.loads(service_account_path.read_text())
    account["token_uri"] = f"http://127.0.0.1:{unused_port()}/token"
    down_path = tmp_path / "down.json"
    down_path.write_text(json.dumps(account))
    service = FcmService(service_account_path=down_path, base_url=fake_fcm.url)

    await service.start()
    result = await service.send(device, ALERT)
    await service.stop()

    assert result == PushResult(Outcome.RETRY, None, "oauth_unreachable")
    assert fake_fcm.received == []
