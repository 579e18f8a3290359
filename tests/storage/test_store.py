"""The SQL store itself, on SQLite and on PostgreSQL, without a server."""

from __future__ import annotations

import asyncio

import orjson

from parley.errors import NotFound, ParleyError
from parley.storage.sql import SqlStore


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


async def test_replying_reads_the_chat_for_every_device_and_tells_the_sender(
    store: SqlStore,
):
    """Frank answers alice's two messages: his devices learn the chat is read
    (unread 0), and alice gets a receipt that frank read them."""
    view, _ = await store.open_private_chat("alice", "frank")
    chat_id = view.chat_id
    await store.send("alice", chat_id, "a1", "one", [])
    await store.send("alice", chat_id, "a2", "two", [])
    frank_before = await store.last_cursor("frank")
    alice_before = await store.last_cursor("alice")

    await store.send("frank", chat_id, "f1", "both seen", [])
    await store.send("frank", chat_id, "f2", "and more", [])

    frank_events = await store.events_after("frank", frank_before, 100)
    alice_events = await store.events_after("alice", alice_before, 100)
    reads = [orjson.loads(e.body) for e in frank_events if e.kind == "read"]
    receipts = [orjson.loads(e.body) for e in alice_events if e.kind == "receipt"]
    assert reads == [{"chat_id": chat_id, "read_seq": 3, "unread_count": 0}]
    assert receipts == [
        {"chat_id": chat_id, "user_id": "frank", "delivered_seq": 3, "read_seq": 3}
    ]
    assert (await store.chat("frank", chat_id)).unread_count == 0
