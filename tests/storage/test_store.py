"""The SQL store itself, on SQLite and on PostgreSQL, without a server."""

from __future__ import annotations

import asyncio

import orjson

from parley.errors import NotFound, ParleyError
from parley.storage.sql import SqlStore
from tests.storage.conftest import RECEIPTS_MAX_CHAT_MEMBERS


async def test_concurrent_sends_get_gap_free_sequences_and_refusals_stay_apart(
    store: SqlStore,
):
    """Sends batched into one commit: every good one stored, every bad one refused."""
    view, _ = await store.create_group("alice", "crowd", ["bob", "carol"])

    async def attempt(number: int):
        sender = "mallory" if number % 7 == 0 else ("alice", "bob", "carol")[number % 3]
        try:
            message, _, _ = await store.send(
                sender, view.chat_id, f"c{number}", "hi", []
            )
            return message.seq
        except ParleyError as refusal:
            return refusal

    outcomes = await asyncio.gather(*(attempt(n) for n in range(70)))

    stored = sorted(o for o in outcomes if isinstance(o, int))
    refused = [o for o in outcomes if not isinstance(o, int)]
    assert stored == list(range(1, 61))
    assert len(refused) == 10 and all(isinstance(r, NotFound) for r in refused)


async def test_the_same_client_id_twice_in_one_batch_is_one_message(store: SqlStore):
    view, _ = await store.open_private_chat("alice", "bob")

    results = await asyncio.gather(
        *(store.send("alice", view.chat_id, "same", "once", []) for _ in range(5))
    )

    assert {message.seq for message, _, _ in results} == {1}
    assert [created for _, created, _ in results].count(True) == 1


async def test_each_member_log_gets_each_message_once_in_order(store: SqlStore):
    view, _ = await store.create_group("alice", "log", ["bob"])
    await asyncio.gather(
        *(store.send("alice", view.chat_id, f"m{n}", f"{n}", []) for n in range(20))
    )

    events = await store.events_after("bob", 0, 100)

    cursors = [event.cursor for event in events]
    assert cursors == list(range(1, len(events) + 1))
    assert [e.kind for e in events].count("message") == 20


async def test_the_migrations_build_exactly_the_schema_the_code_uses(store: SqlStore):
    """Alembic finds nothing to change between the migrated database and schema.py."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from parley.storage.schema import metadata

    async with store._read() as conn:
        differences = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )

    assert differences == []


async def test_presence_goes_to_private_chats_and_small_groups_only(store: SqlStore):
    """In a big group, members coming online are not announced to everyone."""
    await store.open_private_chat("alice", "bob")
    await store.create_group("alice", "small", ["carol"])
    await store.create_group("alice", "big", [f"fan{n}" for n in range(70)])

    assert await store.contacts("alice", max_chat_members=64) == ["bob", "carol"]
    assert len(await store.contacts("alice", max_chat_members=100)) == 72


async def test_a_large_group_sends_no_live_receipts_yet_keeps_them(store: SqlStore):
    """In a group one larger than the limit, bob's acknowledgement and read
    reach alice as no event; the message's receipts still say what he did.
    In a group at the limit, the same acknowledgement makes a receipt."""
    crowd = [f"member{n}" for n in range(RECEIPTS_MAX_CHAT_MEMBERS)]
    large, _ = await store.create_group("alice", "large", crowd)
    small, _ = await store.create_group("alice", "small", crowd[:-1])
    for chat_id in (large.chat_id, small.chat_id):
        await store.send("alice", chat_id, f"hello-{chat_id}", "hello", [])
    alice_before = await store.last_cursor("alice")

    await store.ack("member0", "phone", await store.last_cursor("member0"))
    await store.read("member1", large.chat_id, 1)

    alice_events = await store.events_after("alice", alice_before, 100)
    receipts = [orjson.loads(e.body) for e in alice_events if e.kind == "receipt"]
    assert [receipt["chat_id"] for receipt in receipts] == [small.chat_id]
    _, recipients = await store.receipts("alice", large.chat_id, 1)
    states = {entry["user_id"]: entry["state"] for entry in recipients}
    assert (states["member0"], states["member1"], states["member2"]) == (
        "delivered",
        "read",
        "sent",
    )


async def test_a_reply_is_its_own_read_receipt(store: SqlStore):
    """Frank answers alice's two messages: his reply reads them, and its
    message event is all either of them is told; the stored read position,
    unread count and receipts agree with it."""
    view, _ = await store.open_private_chat("alice", "frank")
    chat_id = view.chat_id
    await store.send("alice", chat_id, "a1", "one", [])
    await store.send("alice", chat_id, "a2", "two", [])
    frank_before = await store.last_cursor("frank")
    alice_before = await store.last_cursor("alice")

    await store.send("frank", chat_id, "f1", "both seen", [])

    frank_events = await store.events_after("frank", frank_before, 100)
    alice_events = await store.events_after("alice", alice_before, 100)
    assert [e.kind for e in frank_events] == ["message"]
    assert [e.kind for e in alice_events] == ["message"]
    reply = orjson.loads(alice_events[0].body)["message"]
    assert (reply["sender_id"], reply["seq"]) == ("frank", 3)
    assert (await store.chat("frank", chat_id)).unread_count == 0
    assert (await store.chat("alice", chat_id)).unread_count == 1
    _, recipients = await store.receipts("alice", chat_id, 2)
    assert recipients == [{"user_id": "frank", "state": "read"}]
