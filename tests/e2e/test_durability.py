"""Nothing acknowledged is lost when the server process is killed."""

from __future__ import annotations

import asyncio

import httpx

from parley.client import ParleyClient, ParleyClientError
from tests.support import IMAGES, ServerProcess


async def test_acknowledged_messages_survive_kill_9(fresh_server: ServerProcess):
    """Messages, a read position and an image, all acknowledged, then SIGKILL."""
    server = fresh_server.start()
    alice = ParleyClient(server.url, server.token("alice", "phone"))
    bob = ParleyClient(server.url, server.token("bob", "phone"))
    chat = await alice.open_private_chat("bob")

    image = await alice.upload_image((IMAGES / "rocket.jpg").read_bytes())
    sent = [await alice.send(chat["id"], f"durable {n}") for n in range(20)]
    sent.append(await alice.send(chat["id"], "with image", images=[image["id"]]))
    await bob.read(chat["id"], 15)
    server.kill()

    server.start()
    history = await bob.history(chat["id"], limit=100)
    bobs_chat = await bob.chat(chat["id"])
    stored_image = await bob.download_image(image["id"], chat_id=chat["id"])
    await alice.close()
    await bob.close()

    assert [m["seq"] for m in history] == [s["message"]["seq"] for s in sent]
    assert history[-1]["images"][0]["id"] == image["id"]
    assert (bobs_chat["read_seq"], bobs_chat["unread_count"]) == (15, 6)
    assert len(stored_image) == image["bytes"]


async def test_every_acknowledged_send_survives_a_kill_mid_traffic(
    fresh_server: ServerProcess,
):
    """Senders race a SIGKILL; each send answered before it is in the chat."""
    server = fresh_server.start()
    senders = [
        ParleyClient(server.url, server.token(f"sender{n}", "phone")) for n in range(4)
    ]
    chat = await senders[0].create_group("load", [f"sender{n}" for n in range(1, 4)])
    acknowledged: list[tuple[str, int]] = []

    async def send_until_refused(client: ParleyClient, name: str) -> None:
        for number in range(10_000):
            try:
                reply = await client.send(chat["id"], f"{name} {number}")
            except (ParleyClientError, httpx.HTTPError):
                return
            acknowledged.append(
                (reply["message"]["client_id"], reply["message"]["seq"])
            )

    traffic = [
        asyncio.create_task(send_until_refused(client, f"s{n}"))
        for n, client in enumerate(senders)
    ]
    while len(acknowledged) < 100:
        await asyncio.sleep(0.01)
    server.kill()
    await asyncio.gather(*traffic)

    server.start()
    reader = ParleyClient(server.url, server.token("sender0", "laptop"))
    stored = []
    after = 0
    while page := await reader.history(chat["id"], after=after, limit=200):
        stored += page
        after = page[-1]["seq"]
    for client in [*senders, reader]:
        await client.close()

    stored_ids = {(m["client_id"], m["seq"]) for m in stored}
    assert set(acknowledged) <= stored_ids
    assert [m["seq"] for m in stored] == list(range(1, len(stored) + 1))
