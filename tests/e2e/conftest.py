"""Fixtures for end-to-end tests: people with devices on a real server."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator

import pytest

from parley.client import ParleyClient
from tests.support import DATA, ServerProcess

_run = itertools.count(1)

# Every delivery in these tests must arrive within this many seconds.
DELIVERY_S = 3.0


class People:
    """Makes users with unique ids on a server, each device a ParleyClient."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.suffix = f"{next(_run)}"
        self._clients: list[ParleyClient] = []

    def id(self, name: str) -> str:
        return f"{name}-{self.suffix}"

    def client(self, name: str, device: str = "default") -> ParleyClient:
        client = ParleyClient(self.server.url, self.server.token(self.id(name), device))
        self._clients.append(client)
        return client

    async def close(self) -> None:
        for client in self._clients:
            await client.close()


@pytest.fixture
async def people(server: ServerProcess) -> AsyncIterator[People]:
    crowd = People(server)
    yield crowd
    await crowd.close()


def texts() -> list[dict]:
    with (DATA / "texts.jsonl").open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]
