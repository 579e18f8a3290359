"""Push notifications from a real server to fake APNs, FCM and Web Push on loopback.

The fakes check the wire format as the real services do (HTTP/2 and provider
tokens for APNs, OAuth for FCM, VAPID and aes128gcm for Web Push); the server
is a real process that reaches them with the credentials it is configured with.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from parley.client import ParleyClient
from tests.push.fakes import (
    BUNDLE_ID,
    CLIENT_EMAIL,
    KEY_ID,
    PROJECT_ID,
    TEAM_ID,
    VAPID_SUBJECT,
    FakeApns,
    FakeFcm,
    FakeWebPush,
    server_tls,
    write_p8,
    write_service_account,
)
from tests.support import ServerProcess

DELIVERY_S = 3.0


@dataclass
class PushWorld:
    server: ServerProcess
    apns: FakeApns
    fcm: FakeFcm
    webpush: FakeWebPush
    vapid_public_key: str
    suffix: str

    def client(self, user: str, device: str) -> ParleyClient:
        return ParleyClient(
            self.server.url, self.server.token(f"{user}-{self.suffix}", device)
        )

    def id(self, user: str) -> str:
        return f"{user}-{self.suffix}"


@pytest.fixture
async def world(
    request: pytest.FixtureRequest, tmp_path: Path, backend_env: dict[str, str]
) -> AsyncIterator[PushWorld]:
    """The fakes and a server using them; a test marked ``stalled_apns`` gets
    an APNs that accepts connections and never answers."""
    stall = await asyncio.start_server(_never_answer, "127.0.0.1", 0)
    stalled_url = f"https://127.0.0.1:{stall.sockets[0].getsockname()[1]}"
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    apns_key = ec.generate_private_key(ec.SECP256R1())
    fcm_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    vapid_key = ec.generate_private_key(ec.SECP256R1())

    apns = FakeApns(
        team_id=TEAM_ID,
        key_id=KEY_ID,
        public_key=apns_key.public_key(),
        bundle_id=BUNDLE_ID,
        ssl_context=server_tls(ca, ["h2"]),
    )
    fcm = FakeFcm(
        project_id=PROJECT_ID,
        client_email=CLIENT_EMAIL,
        private_key_id=uuid.uuid4().hex,
        public_key=fcm_key.public_key(),
    )
    webpush = FakeWebPush(ssl_context=server_tls(ca, ["http/1.1"]))
    for fake in (apns, fcm, webpush):
        await fake.start()

    vapid_pem = vapid_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    env = {
        **backend_env,
        "PARLEY_PUSH_DELAY_MS": "500",
        "PARLEY_APNS_KEY_FILE": str(write_p8(apns_key, tmp_path / "apns.p8")),
        "PARLEY_APNS_KEY_ID": KEY_ID,
        "PARLEY_APNS_TEAM_ID": TEAM_ID,
        "PARLEY_APNS_BUNDLE_ID": BUNDLE_ID,
        "PARLEY_APNS_URL": (
            stalled_url if request.node.get_closest_marker("stalled_apns") else apns.url
        ),
        "PARLEY_APNS_CA_FILE": str(ca_file),
        "PARLEY_FCM_SERVICE_ACCOUNT_FILE": str(
            write_service_account(fcm, fcm_key, tmp_path / "fcm.json")
        ),
        "PARLEY_FCM_URL": fcm.url,
        "PARLEY_WEBPUSH_VAPID_PRIVATE_KEY": vapid_pem,
        "PARLEY_WEBPUSH_SUBJECT": VAPID_SUBJECT,
        "PARLEY_WEBPUSH_CA_FILE": str(ca_file),
        "PARLEY_WEBPUSH_ALLOWED_HOSTS": '["127.0.0.1"]',
    }
    server = ServerProcess(tmp_path / "data", env)
    # The fakes answer on this event loop: wait for the server in a thread.
    await asyncio.to_thread(server.start)
    raw_public = vapid_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    yield PushWorld(
        server,
        apns,
        fcm,
        webpush,
        base64.urlsafe_b64encode(raw_public).rstrip(b"=").decode(),
        uuid.uuid4().hex[:8],
    )
    await asyncio.to_thread(server.stop)
    stall.close()
    for fake in (apns, fcm, webpush):
        await fake.stop()


async def _never_answer(reader, writer) -> None:  # noqa: ANN001
    """A service that takes the connection and then says nothing at all."""
    await reader.read()
    writer.close()


async def wait_until(condition, timeout_s: float = DELIVERY_S) -> None:  # noqa: ANN001
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.05)


def apns_token() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


async def register_apns(client: ParleyClient) -> str:
    token = apns_token()
    await client._call(
        "PUT", "/v1/devices/current/push", json={"service": "apns", "token": token}
    )
    return token


async def test_an_offline_phone_gets_one_collapsed_notification_and_loses_it_on_read(
    world: PushWorld,
):
    """Three messages: one alert with the count; alice reads on her laptop:
    the phone's notification is withdrawn."""
    phone = world.client("alice", "phone")
    laptop = world.client("alice", "laptop")
    bob = world.client("bob", "phone")
    token = await register_apns(phone)
    chat = await bob.open_private_chat(world.id("alice"))

    for number in range(3):
        await bob.send(chat["id"], f"secret {number}")
    await wait_until(lambda: len(world.apns.received) >= 1)
    await asyncio.sleep(0.7)
    alerts = list(world.apns.received)

    await laptop.read(chat["id"], 3)
    await wait_until(lambda: len(world.apns.received) >= 2)
    withdrawal = world.apns.received[-1]
    for client in (phone, laptop, bob):
        await client.close()

    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.token == token
    assert alert.headers["apns-push-type"] == "alert"
    assert alert.headers["apns-collapse-id"] == f"chat-{chat['id']}"
    assert alert.payload["aps"]["badge"] == 3
    assert alert.payload["aps"]["alert"]["body"] == "3 new messages"
    assert b"secret" not in alert.body
    assert withdrawal.headers["apns-push-type"] == "background"
    assert withdrawal.payload["withdraw"] == f"chat-{chat['id']}"


async def test_a_connected_device_and_the_sender_are_not_pushed(world: PushWorld):
    """alice's phone is online: the message arrives live, and no push goes out."""
    phone = world.client("alice", "phone")
    bob = world.client("bob", "phone")
    await register_apns(phone)
    await register_apns(bob)
    chat = await bob.open_private_chat(world.id("alice"))

    async with phone.connect() as live:
        await asyncio.wait_for(live.synced.wait(), DELIVERY_S)
        await bob.send(chat["id"], "you are here")
        await live.wait_for(lambda f: f["type"] == "message", DELIVERY_S)
        await asyncio.sleep(1.5)
    for client in (phone, bob):
        await client.close()

    assert world.apns.received == []


async def test_a_muted_chat_sends_no_notification(world: PushWorld):
    phone = world.client("alice", "phone")
    bob = world.client("bob", "phone")
    await register_apns(phone)
    chat = await bob.open_private_chat(world.id("alice"))

    await phone._call("PUT", f"/v1/chats/{chat['id']}/mute", json={"muted": True})
    await bob.send(chat["id"], "shh")
    await asyncio.sleep(1.5)
    muted = (await phone.chat(chat["id"]))["muted"]
    for client in (phone, bob):
        await client.close()

    assert muted is True
    assert world.apns.received == []


async def test_android_and_browser_devices_are_notified_through_fcm_and_web_push(
    world: PushWorld,
):
    """The FCM message and the decrypted Web Push payload show the chat and count."""
    android = world.client("carol", "android")
    browser = world.client("carol", "browser")
    bob = world.client("bob", "phone")
    fcm_token = world.fcm.register()
    await android._call(
        "PUT", "/v1/devices/current/push", json={"service": "fcm", "token": fcm_token}
    )
    subscription = world.webpush.subscribe(world.vapid_public_key)
    await browser._call(
        "PUT",
        "/v1/devices/current/push",
        json={
            "service": "webpush",
            "token": subscription.token,
            "p256dh": subscription.p256dh,
            "auth": subscription.auth,
        },
    )
    group = await bob.create_group("weekend", [world.id("carol")])

    await bob.send(group["id"], "are you coming?")
    await wait_until(lambda: world.fcm.received and world.webpush.received)
    for client in (android, browser, bob):
        await client.close()

    message = world.fcm.received[0]
    assert message["token"] == fcm_token
    assert message["notification"]["title"] == "weekend"
    assert message["android"]["collapse_key"] == f"chat-{group['id']}"
    shown = world.webpush.received[0].message
    assert shown["title"] == "weekend" and shown["unread_count"] == 1
    assert "are you coming" not in json.dumps(shown)


async def test_an_address_the_service_calls_gone_is_removed(world: PushWorld):
    """APNs says Unregistered: the next message makes no request at all."""
    phone = world.client("alice", "phone")
    bob = world.client("bob", "phone")
    token = await register_apns(phone)
    world.apns.unregister(token)
    chat = await bob.open_private_chat(world.id("alice"))

    await bob.send(chat["id"], "one")
    await wait_until(lambda: world.apns.refusals)
    await asyncio.sleep(0.5)
    await bob.send(chat["id"], "two")
    await asyncio.sleep(1.5)
    for client in (phone, bob):
        await client.close()

    assert [refusal.reason for refusal in world.apns.refusals] == ["Unregistered"]
    assert world.apns.received == []


async def test_a_service_that_fails_is_retried_with_backoff(world: PushWorld):
    """503 first: the notification still arrives, a second or so later."""
    phone = world.client("alice", "phone")
    bob = world.client("bob", "phone")
    await register_apns(phone)
    chat = await bob.open_private_chat(world.id("alice"))
    world.apns.fail_next(503, "ServiceUnavailable")

    await bob.send(chat["id"], "again")
    await wait_until(lambda: world.apns.received, timeout_s=6)
    for client in (phone, bob):
        await client.close()

    assert len(world.apns.received) == 1


async def test_a_queued_push_survives_kill_9(world: PushWorld):
    """The server dies after the send but before the push was due; it goes out."""
    phone = world.client("alice", "phone")
    bob = world.client("bob", "phone")
    await register_apns(phone)
    chat = await bob.open_private_chat(world.id("alice"))

    await bob.send(chat["id"], "before the crash")
    world.server.kill()
    await asyncio.to_thread(world.server.start)
    await wait_until(lambda: world.apns.received, timeout_s=6)
    for client in (phone, bob):
        await client.close()

    assert world.apns.received[0].payload["aps"]["badge"] == 1


@pytest.mark.stalled_apns
async def test_a_stalled_service_delays_neither_other_services_nor_messages(
    world: PushWorld,
):
    """APNs hangs on more pushes than a lane has workers; the Android phone is
    still notified, the laptop still gets the message live, both in time."""
    iphones = [world.client("alice", f"iphone{n}") for n in range(20)]
    android = world.client("carol", "android")
    laptop = world.client("carol", "laptop")
    bob = world.client("bob", "phone")
    for iphone in iphones:
        await register_apns(iphone)
    fcm_token = world.fcm.register()
    await android._call(
        "PUT", "/v1/devices/current/push", json={"service": "fcm", "token": fcm_token}
    )
    to_alice = await bob.open_private_chat(world.id("alice"))
    to_carol = await bob.open_private_chat(world.id("carol"))

    async with laptop.connect() as live:
        await asyncio.wait_for(live.synced.wait(), DELIVERY_S)
        for number in range(5):
            await bob.send(to_alice["id"], f"into the void {number}")
        await asyncio.sleep(1.0)
        await bob.send(to_carol["id"], "still there?")
        arrived = await live.wait_for(lambda f: f["type"] == "message", DELIVERY_S)
        await wait_until(lambda: world.fcm.received)
    for client in (*iphones, android, laptop, bob):
        await client.close()

    assert arrived["message"]["text"] == "still there?"
    assert world.fcm.received[0]["token"] == fcm_token
    assert world.apns.received == []
