"""Structured logs: JSON lines in production, readable lines on a terminal.

What each level means here:

- ERROR: a request or connection failed because of Parley or an engine it
  depends on; an operator should look.
- WARNING: something degraded but was handled (a client cut off for being
  too slow, storage briefly unavailable).
- INFO: life-cycle of the node (start, stop, migrations) and of connections.
- DEBUG: per-frame detail; never enabled on a busy node.

No message text, token or credential is ever logged.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure(level: str = "info", fmt: str = "json") -> None:
    renderer = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # Access logs would carry query strings, and so tokens of browsers; so
    # would uvicorn's lines per WebSocket, two per connecting device, which
    # cost more to write than the connection. Its warnings and errors stay;
    # "node started" says where the node listens.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    # Alembic narrates its plugins at INFO; the CLI reports the schema itself.
    # SQLAlchemy and aiosqlite would log statements with their parameters,
    # which hold message text, even at DEBUG: keep them to warnings.
    # HTTP clients log request URLs, which for push hold device tokens.
    for name in (
        "alembic",
        "sqlalchemy",
        "aiosqlite",
        "asyncio",
        "httpx",
        "httpcore",
        "hpack",
        "google",
        "urllib3",
    ):
        logging.getLogger(name).setLevel(max(root.level, logging.WARNING))
