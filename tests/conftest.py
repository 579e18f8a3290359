"""Shared fixtures: real server processes, on the embedded default and at scale.

Every end-to-end test runs twice: on SQLite with in-process fan-out and local
images, and on PostgreSQL with Redis fan-out and presence and S3 images.
PostgreSQL and Redis must be running (``.ci/run`` starts them); the S3 server
is started here, on loopback.
"""

from __future__ import annotations

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

BACKENDS = ["sqlite", "postgres-redis-s3"]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("s3")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def backend_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Environment that points a server at new, empty stores of one backend."""
    if request.param == "sqlite":
        yield {}
        return

    s3_server: S3Server = request.getfixturevalue("s3_server")
    database_url = create_postgres_database()
    migrate(database_url)
    yield {
        "PARLEY_DATABASE_URL": database_url,
        "PARLEY_REDIS_URL": REDIS_URL,
        "PARLEY_REDIS_PREFIX": f"parley-test-{uuid.uuid4().hex[:8]}:",
        **s3_server.env(s3_server.create_bucket()),
    }
    drop_postgres_database(database_url)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, backend_env: dict[str, str]
) -> Iterator[ServerProcess]:
    """One server shared by the tests of a module, per backend."""
    process = ServerProcess(tmp_path_factory.mktemp("server") / "data", backend_env)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def fresh_server(tmp_path, backend_env: dict[str, str]) -> Iterator[ServerProcess]:  # noqa: ANN001
    """A server of this test's own, which the test may kill.

    At scale it shares the module's database, Redis prefix and bucket, so tests
    that use it pick user names of their own.
    """
    process = ServerProcess(tmp_path / "data", backend_env)
    yield process
    process.stop()
