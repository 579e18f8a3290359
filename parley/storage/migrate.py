"""The schema history (Alembic migrations), applied and checked by version."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import create_async_engine

_SCRIPTS = Path(__file__).parent / "migrations"


class SchemaMismatch(RuntimeError):
    """The database is not at the schema version this Parley knows."""


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes["database_url"] = database_url
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("")).get_current_head()
    assert head is not None
    return head


def upgrade(database_url: str) -> None:
    """Apply every migration the database lacks. Runs outside an event loop."""
    command.upgrade(alembic_config(database_url), "head")


def current_revision(database_url: str) -> str | None:
    return asyncio.run(_current_revision(database_url))


async def _current_revision(database_url: str) -> str | None:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync_conn: MigrationContext.configure(
                    sync_conn
                ).get_current_revision()
            )
    finally:
        await engine.dispose()


def check(database_url: str) -> None:
    """Refuse a database whose schema is older or newer than this code's."""
    current = current_revision(database_url)
    head = head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaMismatch("the database has no Parley schema; run 'parley migrate'")
    raise SchemaMismatch(
        f"the database is at schema {current}, this Parley needs {head}; "
        "run 'parley migrate' (or upgrade Parley if the schema is newer)"
    )
