"""Alembic's entry point: runs the migrations on the configured database."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from parley.storage.schema import metadata


def _run(sync_conn) -> None:  # noqa: ANN001
    context.configure(
        connection=sync_conn,
        target_metadata=metadata,
        render_as_batch=sync_conn.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_async_engine(context.config.attributes["database_url"])
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


asyncio.run(_run_online())
