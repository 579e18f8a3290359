"""The store's frequent statements, as SQL text run on the driver itself.

A send, an acknowledgement and a catch-up each run a handful of small
statements. Through SQLAlchemy's expression language each one costs tens of
microseconds of Python (building the statement, its cache key, its parameters
and its result) against a few for SQLite to run it, so the hot transactions
write their SQL once, here, and hand it straight to the driver: the standard
library's ``sqlite3`` on the event loop's thread for SQLite, asyncpg through
``exec_driver_sql`` for PostgreSQL. The SQL is the common subset of both
dialects; only placeholders differ, and are rewritten once per statement.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

Row = tuple[Any, ...]


class Statements(Protocol):
    """SQL text with ``?`` placeholders, run inside the caller's transaction."""

    async def rows(self, sql: str, parameters: Sequence = ()) -> list[Row]: ...

    async def row(self, sql: str, parameters: Sequence = ()) -> Row | None: ...

    async def run(self, sql: str, parameters: Sequence = ()) -> None: ...

    async def run_many(self, sql: str, parameters: Iterable[Sequence]) -> None: ...


class SqliteStatements:
    """Statements on a ``sqlite3`` connection, run inline: no thread hop."""

    __slots__ = ("_connection",)

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    async def rows(self, sql: str, parameters: Sequence = ()) -> list[Row]:
        return self._connection.execute(sql, parameters).fetchall()

    async def row(self, sql: str, parameters: Sequence = ()) -> Row | None:
        return self._connection.execute(sql, parameters).fetchone()

    async def run(self, sql: str, parameters: Sequence = ()) -> None:
        self._connection.execute(sql, parameters)

    async def run_many(self, sql: str, parameters: Iterable[Sequence]) -> None:
        self._connection.executemany(sql, parameters)


class DriverStatements:
    """Statements on PostgreSQL, through the connection's own driver cursor."""

    __slots__ = ("_connection",)

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def rows(self, sql: str, parameters: Sequence = ()) -> list[Row]:
        result = await self._connection.exec_driver_sql(
            _numbered(sql), tuple(parameters)
        )
        return [tuple(row) for row in result.all()]

    async def row(self, sql: str, parameters: Sequence = ()) -> Row | None:
        result = await self._connection.exec_driver_sql(
            _numbered(sql), tuple(parameters)
        )
        found = result.first()
        return None if found is None else tuple(found)

    async def run(self, sql: str, parameters: Sequence = ()) -> None:
        await self._connection.exec_driver_sql(_numbered(sql), tuple(parameters))

    async def run_many(self, sql: str, parameters: Iterable[Sequence]) -> None:
        batch = [tuple(one) for one in parameters]
        if batch:
            await self._connection.exec_driver_sql(_numbered(sql), batch)


@lru_cache(maxsize=1024)
def placeholders(count: int) -> str:
    """``?, ?, ?`` for an ``IN (...)`` list of ``count`` values."""
    return ", ".join("?" * count)


@lru_cache(maxsize=1024)
def _numbered(sql: str) -> str:
    """PostgreSQL's driver numbers its placeholders: ``?`` becomes ``$1``..."""
    counter = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)
