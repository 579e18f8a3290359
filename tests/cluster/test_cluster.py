"""Many nodes: devices spread over three servers, and one of them killed."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import httpx

from parley.client import ParleyClient, ParleyClientError
from tests.e2e.conftest import DELIVERY_S
from tests.support import IMAGES, ServerProcess


def client(node: ServerProcess, user: str, device: str) -> ParleyClient:
    return ParleyClient(node.url, node.token(user, device))


def message_in(chat_id: int):
    return lambda f: f["type"] == "message" and f["message"]["chat_id"] == chat_id


async def test_the_story_holds_with_devices_spread_over_three_nodes(
    cluster: list[ServerProcess],
):
    """Sends, receipts, cross-device reads and presence cross node boundaries."""
    one, two, three = cluster
    alice_phone, alice_laptop = (
        client(one, "alice", "phone"),
        client(two, "alice", "laptop"),
    )
    bob, carol = client(three, "bob", "phone"), client(one, "carol", "web")

    private = await alice_phone.open_private_chat("bob")
    group = await alice_laptop.create_group("across", ["bob", "carol"])
    photo = await bob.upload_image((IMAGES / "rocket.jpg").read_bytes())

    async with (
        alice_phone.connect() as phone,
        alice_laptop.connect() as laptop,
        carol.connect() as web,
    ):
        async with bob.connect() as bobs_phone:
            await asyncio.wait_for(web.synced.wait(), DELIVERY_S)
            await bobs_phone.send(group["id"], "from node three", images=[photo["id"]])
            arrived = await web.wait_for(message_in(group["id"]), DELIVERY_S)
            assert await carol.download_image(
                photo["id"], chat_id=group["id"]
            ) == await bob.download_image(photo["id"])

            sent = await bobs_phone.send(private["id"], "hi alice")
            await phone.wait_for(message_in(private["id"]), DELIVERY_S)
            await laptop.wait_for(message_in(private["id"]), DELIVERY_S)
            receipt = await bobs_phone.wait_for(
                lambda f: f["type"] == "receipt", DELIVERY_S
            )
            assert receipt["delivered_seq"] == sent["message"]["seq"]

            await laptop.read(private["id"], sent["message"]["seq"])
            told = await phone.wait_for(lambda f: f["type"] == "read", DELIVERY_S)
            assert told["unread_count"] == 0
            read = await bobs_phone.wait_for(
                lambda f: (
                    f["type"] == "receipt" and f["read_seq"] == sent["message"]["seq"]
                ),
                DELIVERY_S,
            )
            assert read["user_id"] == "alice"

        offline = await web.wait_for(
            lambda f: (
                f["type"] == "presence" and f["user_id"] == "bob" and not f["online"]
            ),
            DELIVERY_S,
        )
    assert arrived["message"]["images"][0]["id"] == photo["id"]
    assert offline["last_seen"]
    assert (await alice_phone.presence("bob"))["online"] is False
    for person in (alice_phone, alice_laptop, bob, carol):
        await person.close()


class Device:
    """A device that stays connected to some live node and records what it gets."""

    def __init__(self, nodes: list[ServerProcess], user: str, start: int) -> None:
        self.nodes = nodes
        self.user = user
        self.node_order = itertools.cycle(range(start, start + len(nodes)))
        self.cursor: int | None = None
        self.seqs: list[int] = []
        self.reconnects = 0

    async def run(self, chat_id: int, stop: asyncio.Event) -> None:
        while not stop.is_set():
            node = self.nodes[next(self.node_order) % len(self.nodes)]
            if node.process.poll() is not None:
                continue
            person = client(node, self.user, "phone")
            try:
                async with person.connect(self.cursor) as live:
                    async for frame in live:
                        if message_in(chat_id)(frame):
                            self.seqs.append(frame["message"]["seq"])
                        self.cursor = live.cursor
            except (ParleyClientError, OSError):
                self.reconnects += 1
                await asyncio.sleep(0.1)
            finally:
                await person.close()


async def send_all(
    nodes: list[ServerProcess], user: str, chat_id: int, count: int, acked: dict
) -> None:
    """Send ``count`` messages, moving to another node (same client id) on failure."""
    node_order = itertools.cycle(nodes)
    for number in range(count):
        client_id = f"{user}-{number}"
        while True:
            node = next(node_order)
            if node.process.poll() is not None:
                continue
            person = client(node, user, "sender")
            try:
                reply = await person.send(
                    chat_id, f"{user} {number}", client_id=client_id
                )
                acked[client_id] = reply["message"]["seq"]
                break
            except (ParleyClientError, httpx.HTTPError):
                await asyncio.sleep(0.05)
            finally:
                await person.close()


async def test_a_node_killed_mid_traffic_loses_and_doubles_nothing(
    cluster: list[ServerProcess],
):
    """Every acknowledged message reaches every device once, in order."""
    senders = [f"sender{n}" for n in range(3)]
    readers = [f"reader{n}" for n in range(6)]
    admin = client(cluster[0], senders[0], "sender")
    group = await admin.create_group("busy", senders[1:] + readers)
    await admin.close()

    devices = [Device(cluster, user, start=n) for n, user in enumerate(readers)]
    stop = asyncio.Event()
    listening = [asyncio.create_task(d.run(group["id"], stop)) for d in devices]
    await asyncio.sleep(1.0)

    acked: dict[str, int] = {}
    sending = [
        asyncio.create_task(send_all(cluster, user, group["id"], 60, acked))
        for user in senders
    ]
    while len(acked) < 40:
        await asyncio.sleep(0.01)
    cluster[1].kill()
    await asyncio.gather(*sending)

    every_seq = sorted(acked.values())
    # Generous: on a loaded machine three nodes share two cores.
    async with asyncio.timeout(45):
        while any(len(d.seqs) < every_seq[-1] for d in devices):
            await asyncio.sleep(0.1)
    stop.set()
    for task in listening:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    assert len(acked) == 180
    assert len(set(every_seq)) == 180
    for device in devices:
        assert device.seqs == list(range(1, every_seq[-1] + 1)), device.user
    assert sum(device.reconnects for device in devices) >= 2


async def test_a_dead_nodes_users_go_offline_for_their_contacts(
    cluster: list[ServerProcess],
):
    """kill -9 takes bob's node; carol, on another node, is told he is offline."""
    carol = client(cluster[0], "carol", "web")
    bob = client(cluster[2], "bob", "phone")
    await carol.open_private_chat("bob")

    async with carol.connect() as web:
        live = bob.connect()
        await live.open()
        await web.wait_for(
            lambda f: f["type"] == "presence" and f["online"], DELIVERY_S
        )
        cluster[2].kill()
        offline = await web.wait_for(
            lambda f: f["type"] == "presence" and not f["online"], 15
        )
    live.abort()
    for person in (carol, bob):
        await person.close()

    assert offline["user_id"] == "bob" and offline["last_seen"]
