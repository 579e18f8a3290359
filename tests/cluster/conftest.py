"""Three server nodes on loopback sharing one PostgreSQL, one Redis, one bucket."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator

import pytest

from tests.support import (
    REDIS_URL,
    S3Server,
    ServerProcess,
    create_postgres_database,
    drop_postgres_database,
    migrate,
)

NODES = 3


@pytest.fixture
def cluster_env(s3_server: S3Server) -> Iterator[dict[str, str]]:
    database_url = create_postgres_database()
    migrate(database_url)
    yield {
        "PARLEY_DATABASE_URL": database_url,
        "PARLEY_REDIS_URL": REDIS_URL,
        "PARLEY_REDIS_PREFIX": f"parley-cluster-{uuid.uuid4().hex[:8]}:",
        "PARLEY_JWT_SECRET": secrets.token_urlsafe(32),
        "PARLEY_PRESENCE_TTL_S": "3",
        **s3_server.env(s3_server.create_bucket()),
    }
    drop_postgres_database(database_url)


@pytest.fixture
def cluster(tmp_path, cluster_env: dict[str, str]) -> Iterator[list[ServerProcess]]:  # noqa: ANN001
    nodes = [
        ServerProcess(
            tmp_path / f"node{n}", {**cluster_env, "PARLEY_NODE_ID": f"node{n}"}
        )
        for n in range(NODES)
    ]
    for node in nodes:
        node.start()
    yield nodes
    for node in nodes:
        node.stop()
