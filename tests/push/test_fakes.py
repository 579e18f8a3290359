"""The fakes refuse what the real services refuse, with the real status and reason.

Each test takes a request that a sender made and the fake accepted, changes
one thing, sends it again and reads the fake's answer.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from parley.push import Notification, PushAddress
from parley.push.apns import ApnsService
from parley.push.fcm import FcmService
from parley.push.webpush import WebPushService
from tests.push.fakes import FakeApns, FakeFcm, FakeWebPush

ALERT = Notification("chat-42", "Ada", "Lunch at noon?", 3, {"chat_id": "42"})

Headers = dict[str, str]
Change = Callable[[Headers, bytes], tuple[Headers, bytes]]


def _set(name: str, value: str) -> Change:
    return lambda headers, body: ({**headers, name: value}, body)


def _drop(name: str) -> Change:
    return lambda headers, body: (
        {key: value for key, value in headers.items() if key != name},
        body,
    )


def _body(change: Callable[[Any], Any]) -> Change:
    return lambda headers, body: (
        headers,
        json.dumps(change(json.loads(body))).encode(),
    )


def _with(key: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda document: {**document, key: value}


def _message_with(key: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda document: {"message": {**document["message"], key: value}}


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        (_drop("authorization"), 403, "MissingProviderToken"),
        (_set("authorization", "bearer not.a.jwt"), 403, "InvalidProviderToken"),
        (_drop("apns-topic"), 400, "MissingTopic"),
        (_set("apns-topic", "org.other.app"), 400, "TopicDisallowed"),
        (_set("apns-push-type", "shout"), 400, "InvalidPushType"),
        (_set("apns-push-type", "background"), 400, "BadPriority"),
        (_set("apns-expiration", "tomorrow"), 400, "BadExpirationDate"),
        (_set("apns-collapse-id", "k" * 65), 400, "BadCollapseId"),
        (lambda headers, body: (headers, b""), 400, "PayloadEmpty"),
        (lambda headers, body: (headers, b"{" * 4097), 413, "PayloadTooLarge"),
        (_body(lambda payload: {"chat_id": "42"}), 400, "BadPayload"),
    ],
    ids=[
        "no provider token",
        "provider token not a JWT",
        "no topic",
        "another app's topic",
        "unknown push type",
        "background at priority 10",
        "expiration not a time",
        "collapse id over 64 bytes",
        "empty payload",
        "payload over 4 KiB",
        "payload without aps",
    ],
)
async def test_the_fake_apns_refuses_what_apple_refuses(
    apns: ApnsService,
    fake_apns: FakeApns,
    client_tls: ssl.SSLContext,
    change: Change,
    status: int,
    reason: str,
) -> None:
    """A request APNs would refuse gets Apple's status and reason code."""
    await apns.send(PushAddress("apns", "5e" * 32), ALERT)
    [accepted] = fake_apns.received
    headers = {
        name: value
        for name, value in accepted.headers.items()
        if not name.startswith(":") and name != "content-length"
    }
    headers, body = change(headers, accepted.body)

    async with httpx.AsyncClient(
        http1=False, http2=True, verify=client_tls, timeout=5.0
    ) as client:
        response = await client.post(
            fake_apns.url + accepted.headers[":path"], headers=headers, content=body
        )

    assert (response.status_code, response.json()["reason"]) == (status, reason)
    assert len(fake_apns.received) == 1


@pytest.mark.parametrize(
    ("change", "status"),
    [
        (_drop("authorization"), 401),
        (_set("content-type", "text/plain"), 400),
        (_body(_with("validate", True)), 400),
        (_body(_message_with("topic", "news")), 400),
        (_body(_message_with("data", {"seq": 17})), 400),
        (_body(_message_with("android", {"priority": "urgent"})), 400),
        (_body(_message_with("android", {"ttl": "1 day"})), 400),
        (_body(_message_with("notification", {"subtitle": "x"})), 400),
    ],
    ids=[
        "no access token",
        "not JSON",
        "unknown top-level field",
        "two targets",
        "a data value that is not a string",
        "unknown priority",
        "ttl not a duration",
        "unknown notification field",
    ],
)
async def test_the_fake_fcm_refuses_what_fcm_refuses(
    fcm: FcmService, fake_fcm: FakeFcm, change: Change, status: int
) -> None:
    """A message FCM would refuse gets FCM's status and a v1 error body."""
    await fcm.send(PushAddress("fcm", fake_fcm.register()), ALERT)
    [body] = fake_fcm.bodies
    headers = {
        "authorization": f"Bearer {fake_fcm.access_tokens[0]}",
        "content-type": "application/json",
    }
    headers, body = change(headers, body)

    async with httpx.AsyncClient(base_url=fake_fcm.url, timeout=5.0) as client:
        response = await client.post(
            "/v1/projects/parley-test/messages:send", headers=headers, content=body
        )

    assert response.status_code == status
    assert response.json()["error"]["code"] == status
    assert len(fake_fcm.received) == 1


@pytest.mark.parametrize(
    ("change", "status"),
    [
        (_drop("authorization"), 403),
        (_set("authorization", "WebPush abc"), 403),
        (_drop("ttl"), 400),
        (_set("urgency", "urgent"), 400),
        (_set("topic", "a" * 33), 400),
        (_set("content-encoding", "aesgcm"), 400),
        (lambda headers, body: (headers, body[:-1] + bytes([body[-1] ^ 1])), 400),
        (lambda headers, body: (headers, body + b"\0" * 4096), 413),
    ],
    ids=[
        "no VAPID header",
        "the old VAPID scheme",
        "no TTL",
        "unknown urgency",
        "topic over 32 characters",
        "the old content encoding",
        "a body that does not decrypt",
        "a body over 4 KiB",
    ],
)
async def test_the_fake_push_service_refuses_what_push_services_refuse(
    webpush: WebPushService,
    fake_webpush: FakeWebPush,
    client_tls: ssl.SSLContext,
    change: Change,
    status: int,
) -> None:
    """A push a push service would refuse gets its status, and nothing decrypted."""
    browser = fake_webpush.subscribe(webpush.application_server_key)
    await webpush.send(browser, ALERT)
    [accepted] = fake_webpush.received
    keep = {"authorization", "ttl", "urgency", "topic", "content-encoding"}
    headers = {k: v for k, v in accepted.headers.items() if k in keep}
    headers, body = change(headers, accepted.body)

    async with httpx.AsyncClient(verify=client_tls, timeout=5.0) as client:
        response = await client.post(browser.token, headers=headers, content=body)

    assert response.status_code == status
    assert len(fake_webpush.received) == 1
