"""A migrated store, on SQLite and on PostgreSQL, with a clock the test moves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from parley.storage import migrate
from parley.storage.sql import SqlStore
from tests.support import create_postgres_database, drop_postgres_database

# Small, so that a test can make a chat too large for live receipts.
RECEIPTS_MAX_CHAT_MEMBERS = 10


class Clock:
    """Milliseconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now_ms = 1_700_000_000_000

    def __call__(self) -> int:
        self.now_ms += 1
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request, tmp_path, clock: Clock) -> AsyncIterator[SqlStore]:  # noqa: ANN001
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        url = await asyncio.to_thread(create_postgres_database)
    await asyncio.to_thread(migrate.upgrade, url)
    opened = SqlStore(
        url,
        clock,
        max_group_members=100,
        receipts_max_chat_members=RECEIPTS_MAX_CHAT_MEMBERS,
        push_delay_ms=1000,
    )
    await opened.open()
    yield opened
    await opened.close()
    if request.param == "postgres":
        await asyncio.to_thread(drop_postgres_database, url)
