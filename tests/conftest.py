"""Shared fixtures: a real server process per test module or per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server shared by the tests of a module."""
    process = ServerProcess(tmp_path_factory.mktemp("server") / "data").start()
    yield process
    process.stop()


@pytest.fixture
def fresh_server(tmp_path) -> Iterator[ServerProcess]:  # noqa: ANN001
    """A server of this test's own, which the test may kill."""
    process = ServerProcess(tmp_path / "data")
    yield process
    process.stop()
