"""The APNs sender against a fake provider API: what the device gets, each outcome."""

from __future__ import annotations

import json
import ssl
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import structlog.testing
from cryptography.hazmat.primitives.asymmetric import ec

from parley.push import Notification, Outcome, PushAddress, PushResult
from parley.push.apns import ApnsService
from tests.push.fakes import (
    BUNDLE_ID,
    KEY_ID,
    TEAM_ID,
    FakeApns,
    FakeClock,
    unused_port,
    write_p8,
)

DEVICE = PushAddress("apns", "5e" * 32)
ALERT = Notification(
    collapse_key="chat-42",
    title="Ada",
    body="Lunch at noon?",
    unread_count=3,
    data={"chat_id": "42", "seq": "17", "kind": "message"},
)
WITHDRAW = replace(ALERT, withdraw=True, unread_count=0)


async def test_an_alert_shows_title_body_and_badge_and_collapses_by_chat(
    apns: ApnsService, fake_apns: FakeApns, clock: FakeClock
) -> None:
    """An alert reaches the device with its title, body, badge and collapse id."""
    result = await apns.send(DEVICE, ALERT)

    assert result == PushResult(Outcome.DELIVERED, 200, "")
    [request] = fake_apns.received
    assert request.token == DEVICE.token
    assert request.payload == {
        "aps": {
            "alert": {"title": "Ada", "body": "Lunch at noon?"},
            "badge": 3,
            "thread-id": "chat-42",
            "sound": "default",
        },
        "chat_id": "42",
        "seq": "17",
        "kind": "message",
    }
    assert request.headers["apns-topic"] == BUNDLE_ID
    assert request.headers["apns-push-type"] == "alert"
    assert request.headers["apns-priority"] == "10"
    assert request.headers["apns-collapse-id"] == "chat-42"
    assert request.headers["apns-expiration"] == str(int(clock() + 24 * 3600))


async def test_a_withdraw_is_a_silent_background_push_naming_the_notification(
    apns: ApnsService, fake_apns: FakeApns
) -> None:
    """A withdraw wakes the app silently, at low priority, with the key to remove."""
    result = await apns.send(DEVICE, WITHDRAW)

    assert result.outcome is Outcome.DELIVERED
    [request] = fake_apns.received
    assert request.payload == {
        "aps": {"content-available": 1},
        "withdraw": "chat-42",
        "unread_count": 0,
        "chat_id": "42",
        "seq": "17",
        "kind": "message",
    }
    assert request.headers["apns-push-type"] == "background"
    assert request.headers["apns-priority"] == "5"
    assert request.headers["apns-collapse-id"] == "chat-42"


async def test_hidden_text_shows_a_count_and_never_goes_on_the_wire(
    apns: ApnsService, fake_apns: FakeApns
) -> None:
    """With text hidden the device shows a count, and no byte sent holds the text."""
    result = await apns.send(DEVICE, replace(ALERT, body=None))

    assert result.outcome is Outcome.DELIVERED
    [request] = fake_apns.received
    assert request.payload["aps"]["alert"] == {"title": "Ada", "body": "3 new messages"}
    assert b"Lunch" not in request.body
    assert "Lunch" not in json.dumps(request.headers)


async def test_an_unregistered_device_is_gone(
    apns: ApnsService, fake_apns: FakeApns
) -> None:
    """Apple's 410 Unregistered tells the caller to delete the address."""
    fake_apns.unregister(DEVICE.token)

    result = await apns.send(DEVICE, ALERT)

    assert result == PushResult(Outcome.GONE, 410, "Unregistered")


async def test_a_device_token_apple_does_not_know_the_shape_of_is_gone(
    apns: ApnsService, fake_apns: FakeApns
) -> None:
    """A hex token of the wrong length gets 400 BadDeviceToken: the address is gone."""
    result = await apns.send(PushAddress("apns", "5e" * 16), ALERT)

    assert result == PushResult(Outcome.GONE, 400, "BadDeviceToken")


async def test_a_token_that_is_not_hex_is_gone_without_asking_apple(
    apns: ApnsService, fake_apns: FakeApns
) -> None:
    """A token that would change the request path is never sent."""
    result = await apns.send(PushAddress("apns", "../../3/device/x"), ALERT)

    assert result == PushResult(Outcome.GONE, None, "BadDeviceToken")
    assert fake_apns.received == [] and fake_apns.refusals == []


@pytest.mark.parametrize(
    ("status", "reason"),
    [(429, "TooManyRequests"), (503, "ServiceUnavailable")],
    ids=["throttled", "unavailable"],
)
async def test_throttling_or_an_outage_asks_for_a_retry_after_the_given_delay(
    apns: ApnsService, fake_apns: FakeApns, status: int, reason: str
) -> None:
    """429 and 503 are transient: retry, after the delay Apple named."""
    fake_apns.fail_next(status, reason, retry_after_s=30)

    result = await apns.send(DEVICE, ALERT)

    assert result == PushResult(Outcome.RETRY, status, reason, 30.0)


async def test_the_provider_token_is_reused_and_renewed_after_fifty_minutes(
    apns: ApnsService, fake_apns: FakeApns, clock: FakeClock
) -> None:
    """One provider token serves every send for 50 minutes, then a new one."""
    for _ in range(3):
        assert (await apns.send(DEVICE, ALERT)).outcome is Outcome.DELIVERED
    clock.advance(49 * 60)
    assert (await apns.send(DEVICE, ALERT)).outcome is Outcome.DELIVERED
    assert len(fake_apns.provider_tokens) == 1

    clock.advance(2 * 60)
    assert (await apns.send(DEVICE, ALERT)).outcome is Outcome.DELIVERED

    assert len(fake_apns.provider_tokens) == 2


async def test_a_provider_token_apple_calls_expired_is_replaced_for_the_retry(
    apns: ApnsService, fake_apns: FakeApns, clock: FakeClock
) -> None:
    """403 ExpiredProviderToken asks for a retry, which goes with a new token."""
    fake_apns.fail_next(403, "ExpiredProviderToken")

    first = await apns.send(DEVICE, ALERT)
    clock.advance(21 * 60)
    second = await apns.send(DEVICE, ALERT)

    assert first == PushResult(Outcome.RETRY, 403, "ExpiredProviderToken")
    assert second.outcome is Outcome.DELIVERED
    assert len(fake_apns.provider_tokens) == 2


async def test_a_key_apple_does_not_know_is_rejected(
    fake_apns: FakeApns, client_tls: ssl.SSLContext, clock: FakeClock, tmp_path: Path
) -> None:
    """A provider token signed with another key gets 403 InvalidProviderToken."""
    other_key = write_p8(ec.generate_private_key(ec.SECP256R1()), tmp_path / "k.p8")
    service = _service(other_key, fake_apns.url, client_tls, clock)

    await service.start()
    result = await service.send(DEVICE, ALERT)
    await service.stop()

    assert result == PushResult(Outcome.REJECTED, 403, "InvalidProviderToken")


async def test_an_unreachable_service_asks_for_a_retry(
    apns_key_path: Path, client_tls: ssl.SSLContext, clock: FakeClock
) -> None:
    """When nothing answers, the send is retried later rather than raised."""
    down_url = f"https://127.0.0.1:{unused_port()}"
    service = _service(apns_key_path, down_url, client_tls, clock)

    await service.start()
    result = await service.send(DEVICE, ALERT)
    await service.stop()

    assert result == PushResult(Outcome.RETRY, None, "unreachable")


async def test_the_fake_apns_refuses_a_client_that_does_not_speak_http2(
    fake_apns: FakeApns, client_tls: ssl.SSLContext
) -> None:
    """Like APNs, the fake cuts off a connection that did not agree on h2."""
    async with httpx.AsyncClient(verify=client_tls, timeout=5.0) as client:
        with pytest.raises(httpx.TransportError):
            await client.post(f"{fake_apns.url}/3/device/{DEVICE.token}", json={})

    assert fake_apns.http1_connections == 1


def _service(
    key_path: Path, base_url: str, verify: ssl.SSLContext, clock: FakeClock
) -> ApnsService:
    return ApnsService(
        key_path=key_path,
        key_id=KEY_ID,
        team_id=TEAM_ID,
        bundle_id=BUNDLE_ID,
        base_url=base_url,
        verify=verify,
        timeout_s=5.0,
        clock=clock,
    )


async def test_the_log_line_names_the_device_and_the_answer_but_no_text_or_token(
    apns: ApnsService, fake_apns: FakeApns
) -> None:
    """An operator sees which device and what Apple said, never text or token."""
    fake_apns.unregister(DEVICE.token)

    with structlog.testing.capture_logs() as lines:
        await apns.send(DEVICE, ALERT)

    [line] = lines
    assert line["device"] == DEVICE.fingerprint
    assert (line["outcome"], line["status"], line["reason"]) == (
        "gone",
        410,
        "Unregistered",
    )
    assert "Lunch" not in str(lines) and DEVICE.token not in str(lines)
