"""The whole story of a day of Parley, on one real server, start to end.

alice has a phone and a laptop, bob a phone, carol a browser. They talk in a
private chat and in a group, send photographs, read on one device and see it
on another, lose the network, go offline, and the server is killed.
"""

from __future__ import annotations

import asyncio

import pytest

from parley.client import ParleyClient, ParleyClientError
from tests.e2e.conftest import DELIVERY_S, texts
from tests.support import IMAGES, ServerProcess


def message_in(chat_id: int):
    return lambda f: f["type"] == "message" and f["message"]["chat_id"] == chat_id


async def test_a_day_of_parley(fresh_server: ServerProcess):
    server = fresh_server.start()

    def person(user: str, device: str) -> ParleyClient:
        return ParleyClient(server.url, server.token(user, device))

    alice_phone, alice_laptop = person("alice", "phone"), person("alice", "laptop")
    bob, carol = person("bob", "phone"), person("carol", "web")

    # A private chat and a group.
    private = await alice_phone.open_private_chat("bob")
    assert (await bob.open_private_chat("alice"))["id"] == private["id"]
    group = await alice_laptop.create_group("weekend", ["bob", "carol"])

    phone = alice_phone.connect()
    await phone.open()
    async with (
        alice_laptop.connect() as laptop,
        bob.connect() as bobs_phone,
        carol.connect() as carols_web,
    ):
        # Photographs: accepted and refused as their names say.
        photo_ids = []
        for name in ("rocket.jpg", "coffee.webp", "chelsea_animated.gif"):
            photo_ids.append(
                (await bob.upload_image((IMAGES / name).read_bytes()))["id"]
            )
        for name in ("coffee_1MiB_plus_1.jpg", "bomb_30000x30000.png", "truncated.jpg"):
            with pytest.raises(ParleyClientError):
                await bob.upload_image((IMAGES / name).read_bytes())
        await bobs_phone.send(group["id"], "photos from saturday", images=photo_ids)
        arrived = await carols_web.wait_for(message_in(group["id"]), DELIVERY_S)
        assert len(arrived["message"]["images"]) == 3
        assert await carol.download_image(
            photo_ids[0], chat_id=group["id"], thumbnail=True
        )

        # Texts: accepted and refused as their verdicts say.
        for case in texts():
            try:
                await bobs_phone.send(private["id"], case["text"])
                verdict = "accept"
            except ParleyClientError:
                verdict = "reject"
            assert verdict == case["verdict"], case["id"]
        accepted = sum(case["verdict"] == "accept" for case in texts())
        for _ in range(accepted):
            await phone.wait_for(message_in(private["id"]), DELIVERY_S)

        # alice reads on the laptop; the phone's unread count drops to 0.
        assert (await alice_phone.chat(private["id"]))["unread_count"] == accepted
        await laptop.read(private["id"], accepted)
        told = await phone.wait_for(lambda f: f["type"] == "read", DELIVERY_S)
        assert told["unread_count"] == 0
        assert (await alice_phone.chat(private["id"]))["unread_count"] == 0

        # bob resends with the same client id: nothing is doubled.
        first = await bobs_phone.send(private["id"], "see you", client_id="bob-42")
        again = await bobs_phone.send(private["id"], "see you", client_id="bob-42")
        assert again["duplicate"] and again["message"]["seq"] == first["message"]["seq"]
        await phone.wait_for(message_in(private["id"]), DELIVERY_S)

        # The phone's connection is cut without a close; it misses five.
        cursor = phone.cursor
        phone.abort()
        for number in range(5):
            await bobs_phone.send(private["id"], f"while you were away {number}")
        async with alice_phone.connect(cursor) as phone_again:
            await asyncio.wait_for(phone_again.synced.wait(), DELIVERY_S)
            missed = [
                f["message"]["text"]
                for f in await phone_again.drain(0.3)
                if f["type"] == "message"
            ]
        assert missed == [f"while you were away {n}" for n in range(5)]

        # bob disconnects; carol sees him offline with a last-seen time.
        await bobs_phone.close()
        gone = await carols_web.wait_for(
            lambda f: (
                f["type"] == "presence" and f["user_id"] == "bob" and not f["online"]
            ),
            DELIVERY_S,
        )
        assert gone["last_seen"]

        # The server is killed right after acknowledging messages.
        last = [
            await laptop.send(group["id"], f"before the crash {n}") for n in range(3)
        ]
    server.kill()
    server.start()

    history = await carol.history(group["id"])
    assert [m["text"] for m in history[-3:]] == [
        f"before the crash {n}" for n in range(3)
    ]
    assert history[-1]["seq"] == last[-1]["message"]["seq"]
    for client in (alice_phone, alice_laptop, bob, carol):
        await client.close()
