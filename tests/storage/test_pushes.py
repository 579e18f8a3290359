"""The durable push queue: collapsing, withdrawing, claiming, finishing."""

from __future__ import annotations

from parley.domain.push import PushKind
from parley.push import PushAddress
from parley.storage.sql import SqlStore
from tests.storage.conftest import Clock

PHONE = PushAddress("apns", "ab" * 32)


async def offline_bob(store: SqlStore) -> int:
    await store.set_push_address("bob", "phone", PHONE)
    view, _ = await store.open_private_chat("alice", "bob")
    return view.chat_id


async def test_a_burst_of_messages_collapses_into_one_due_notification(
    store: SqlStore, clock: Clock
):
    """Three messages, one job, due a delay after the first, for the newest."""
    chat_id = await offline_bob(store)
    for number in range(3):
        await store.send("alice", chat_id, f"m{number}", f"hello {number}", [])

    assert await store.claim_pushes(10, lease_ms=30_000) == []
    clock.advance(1000)
    jobs = await store.claim_pushes(10, lease_ms=30_000)

    assert len(jobs) == 1
    job = jobs[0]
    assert (job.kind, job.seq, job.unread_count, job.text) == (
        PushKind.NOTIFY,
        3,
        3,
        "hello 2",
    )


async def test_a_claimed_job_is_not_claimed_again_until_its_lease_ends(
    store: SqlStore, clock: Clock
):
    chat_id = await offline_bob(store)
    await store.send("alice", chat_id, "m", "hello", [])
    clock.advance(1000)

    first = await store.claim_pushes(10, lease_ms=30_000)
    second = await store.claim_pushes(10, lease_ms=30_000)
    clock.advance(30_000)
    after_lease = await store.claim_pushes(10, lease_ms=30_000)

    assert len(first) == 1 and second == [] and len(after_lease) == 1


async def test_reading_elsewhere_withdraws_a_shown_notification(
    store: SqlStore, clock: Clock
):
    """Delivered, then read on the laptop: the phone is owed a withdrawal."""
    chat_id = await offline_bob(store)
    await store.send("alice", chat_id, "m", "hello", [])
    clock.advance(1000)
    [job] = await store.claim_pushes(10, lease_ms=30_000)
    await store.finish_push(job, delivered=True)

    await store.read("bob", chat_id, 1)
    [withdrawal] = await store.claim_pushes(10, lease_ms=30_000)
    await store.finish_push(withdrawal, delivered=True)

    assert (withdrawal.kind, withdrawal.seq) == (PushKind.WITHDRAW, 1)
    assert await store.claim_pushes(10, lease_ms=30_000) == []


async def test_replying_elsewhere_withdraws_a_shown_notification(
    store: SqlStore, clock: Clock
):
    """Shown on the phone, then answered from the laptop: sending reads the
    chat, so the phone is owed a withdrawal and nothing more."""
    chat_id = await offline_bob(store)
    await store.send("alice", chat_id, "m", "hello", [])
    clock.advance(1000)
    [job] = await store.claim_pushes(10, lease_ms=30_000)
    await store.finish_push(job, delivered=True)

    await store.send("bob", chat_id, "r", "hi", [])
    [withdrawal] = await store.claim_pushes(10, lease_ms=30_000)

    assert (withdrawal.kind, withdrawal.device_id, withdrawal.seq) == (
        PushKind.WITHDRAW,
        "phone",
        1,
    )


async def test_a_taken_token_takes_along_what_the_device_was_owed(
    store: SqlStore, clock: Clock
):
    """Bob's phone loses its token to another install, bob answers from his
    laptop, then the phone registers again: the chat is read, so nothing is
    pushed for it."""
    chat_id = await offline_bob(store)
    await store.send("alice", chat_id, "m", "hello", [])
    await store.set_push_address("carol", "tablet", PHONE)
    await store.send("bob", chat_id, "r", "hi", [])
    await store.set_push_address("bob", "phone", PushAddress("apns", "cd" * 32))
    clock.advance(1000)

    assert await store.claim_pushes(10, lease_ms=30_000) == []


async def test_reading_before_the_push_goes_out_cancels_it(
    store: SqlStore, clock: Clock
):
    chat_id = await offline_bob(store)
    await store.send("alice", chat_id, "m", "hello", [])

    await store.read("bob", chat_id, 1)
    clock.advance(1000)

    assert await store.claim_pushes(10, lease_ms=30_000) == []


async def test_a_muted_chat_and_the_sender_get_no_notification(
    store: SqlStore, clock: Clock
):
    chat_id = await offline_bob(store)
    await store.set_push_address("alice", "phone", PushAddress("fcm", "token-a"))
    await store.set_muted("bob", chat_id, True)

    await store.send("alice", chat_id, "m", "hello", [])
    clock.advance(1000)

    assert await store.claim_pushes(10, lease_ms=30_000) == []


async def test_a_message_that_arrives_while_a_push_is_in_flight_is_sent_after(
    store: SqlStore, clock: Clock
):
    """Finishing an outdated job leaves the newer content due."""
    chat_id = await offline_bob(store)
    await store.send("alice", chat_id, "m1", "first", [])
    clock.advance(1000)
    [job] = await store.claim_pushes(10, lease_ms=30_000)
    await store.send("alice", chat_id, "m2", "second", [])

    await store.finish_push(job, delivered=True)
    clock.advance(1000)
    [newer] = await store.claim_pushes(10, lease_ms=30_000)

    assert (newer.seq, newer.text, newer.unread_count) == (2, "second", 2)


async def test_a_gone_address_is_forgotten_with_its_jobs(store: SqlStore, clock: Clock):
    chat_id = await offline_bob(store)
    await store.send("alice", chat_id, "m1", "first", [])
    clock.advance(1000)
    [job] = await store.claim_pushes(10, lease_ms=30_000)

    await store.forget_push_address(job)
    await store.send("alice", chat_id, "m2", "second", [])
    clock.advance(1000)

    assert await store.claim_pushes(10, lease_ms=30_000) == []


async def test_a_push_token_reaches_only_the_device_that_registered_it_last(
    store: SqlStore, clock: Clock
):
    """The phone switches accounts: the old account's messages stop coming."""
    old_chat = await offline_bob(store)
    await store.set_push_address("carol", "phone", PHONE)

    await store.send("alice", old_chat, "m", "for bob", [])
    clock.advance(1000)

    assert await store.claim_pushes(10, lease_ms=30_000) == []
