"""The SQLite writer's one connection survives a refused BEGIN and a caller
cancelled while its commit waits for the disk."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from parley.errors import Unavailable
from parley.storage import migrate, sql
from parley.storage.sql import SqlStore
from tests.storage.conftest import Clock


@pytest.fixture
async def sqlite_store(tmp_path: Path, clock: Clock) -> AsyncIterator[SqlStore]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    opened = SqlStore(url, clock, max_group_members=100)
    await opened.open()
    yield opened
    await opened.close()


async def test_a_write_refused_behind_another_process_leaves_the_writer_usable(
    sqlite_store: SqlStore, tmp_path: Path
):
    """BEGIN IMMEDIATE times out (5 s) behind another process's write while
    the event loop goes on; the next write, once the file is free, goes
    through at once."""
    await sqlite_store.open_private_chat("alice", "carol")
    other = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.1)
            ticks += 1

    ticker = asyncio.create_task(tick())
    with pytest.raises(Unavailable):
        await sqlite_store.open_private_chat("alice", "bob")
    ticker.cancel()
    other.execute("ROLLBACK")
    other.close()

    started = time.monotonic()
    view, _ = await sqlite_store.open_private_chat("alice", "bob")

    assert ticks >= 30
    assert view.chat_id > 0
    assert time.monotonic() - started < 2


async def test_a_request_cancelled_during_its_commit_holds_the_writer_until_it_ends(
    sqlite_store: SqlStore, monkeypatch: pytest.MonkeyPatch
):
    """The commit goes on in its thread; the cancelled caller lets go of the
    write lock only after it, and what it wrote is stored."""
    view, _ = await sqlite_store.open_private_chat("alice", "bob")
    await sqlite_store.send("alice", view.chat_id, "m1", "hello", [])
    slow_commit = sql._commit

    def commit_slowly(transaction, connection):  # noqa: ANN001, ANN202
        time.sleep(0.5)
        slow_commit(transaction, connection)

    monkeypatch.setattr(sql, "_commit", commit_slowly)
    reading = asyncio.create_task(sqlite_store.read("bob", view.chat_id, 1))
    await asyncio.sleep(0.1)
    reading.cancel()
    started = time.monotonic()
    await asyncio.wait({reading})
    waited_s = time.monotonic() - started
    locked_after = sqlite_store._write_lock.locked()
    monkeypatch.setattr(sql, "_commit", slow_commit)

    chat = await sqlite_store.chat("bob", view.chat_id)

    assert reading.cancelled()
    assert waited_s > 0.3 and not locked_after
    assert chat.unread_count == 0
