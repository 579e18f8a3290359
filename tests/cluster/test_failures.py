"""Engines that fail under a running cluster: Redis restarted, PostgreSQL gone."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time

import httpx
import pytest

from parley.client import ConnectionClosedByServer, ParleyClient, ParleyClientError
from tests.e2e.conftest import DELIVERY_S
from tests.support import ServerProcess, free_port


class PrivateRedis:
    """A Redis server of the test's own, which it may stop and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ping = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True
            )
            if ping.stdout.strip() == b"PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("private Redis did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class CuttableProxy:
    """A TCP proxy to PostgreSQL that can drop every connection, as an outage."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.cut = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def stop(self) -> None:
        self.sever()
        self._server.close()

    def sever(self) -> None:
        self.cut = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.cut = False

    async def _accept(self, reader, writer) -> None:  # noqa: ANN001
        if self.cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer)
        )

    async def _pipe(self, reader, writer) -> None:  # noqa: ANN001
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self._writers.discard(writer)


@pytest.fixture
def private_redis():
    redis = PrivateRedis()
    redis.start()
    yield redis
    redis.stop()


def message_in(chat_id: int):
    return lambda f: f["type"] == "message" and f["message"]["chat_id"] == chat_id


async def test_sends_are_stored_while_redis_is_gone_and_arrive_once_it_is_back(
    tmp_path, cluster_env, private_redis: PrivateRedis
):
    """Redis dies: sends still succeed; when it returns, devices catch up."""
    env = {**cluster_env, "PARLEY_REDIS_URL": private_redis.url}
    nodes = [ServerProcess(tmp_path / f"node{n}", env).start() for n in range(2)]
    alice = ParleyClient(nodes[0].url, nodes[0].token("alice", "phone"))
    bob = ParleyClient(nodes[1].url, nodes[1].token("bob", "phone"))
    chat = await bob.open_private_chat("alice")

    try:
        async with alice.connect() as phone:
            await asyncio.wait_for(phone.synced.wait(), DELIVERY_S)
            private_redis.stop()
            sent = [
                await bob.send(chat["id"], f"during the outage {n}") for n in range(3)
            ]
            ready = httpx.get(f"{nodes[1].url}/readyz").json()

            private_redis.start()
            texts = []
            for _ in range(3):
                frame = await phone.wait_for(message_in(chat["id"]), 10)
                texts.append(frame["message"]["text"])
            later = await phone.drain(0.5)
    finally:
        await alice.close()
        await bob.close()
        for node in nodes:
            node.stop()

    assert [s["duplicate"] for s in sent] == [False] * 3
    assert ready["status"] == "degraded" and ready["checks"]["fanout"] == "degraded"
    assert texts == [f"during the outage {n}" for n in range(3)]
    assert not [f for f in later if f["type"] == "message"]


async def test_postgres_gone_refuses_sends_and_the_node_recovers_by_itself(
    tmp_path, cluster_env
):
    """No storage: a clear 503 and nothing acknowledged; back: it just works."""
    proxy = CuttableProxy(5432)
    await proxy.start()
    url = cluster_env["PARLEY_DATABASE_URL"].replace(":5432/", f":{proxy.port}/")
    node = ServerProcess(tmp_path / "node", {**cluster_env, "PARLEY_DATABASE_URL": url})
    # The proxy runs on this event loop; wait for the node without blocking it.
    await asyncio.to_thread(node.start)
    alice = ParleyClient(node.url, node.token("alice", "phone"))
    chat = await alice.open_private_chat("bob")
    before = await alice.send(chat["id"], "before the outage")

    try:
        proxy.sever()
        with pytest.raises(ParleyClientError) as refused:
            await alice.send(chat["id"], "during the outage", client_id="during")
        async with httpx.AsyncClient() as http:
            health = (await http.get(f"{node.url}/healthz")).status_code
            ready = await http.get(f"{node.url}/readyz")

        proxy.restore()
        async with asyncio.timeout(15):
            while True:
                try:
                    after = await alice.send(chat["id"], "after the outage")
                    break
                except ParleyClientError:
                    await asyncio.sleep(0.2)
        history = await alice.history(chat["id"])
    finally:
        await alice.close()
        await asyncio.to_thread(node.stop)
        await proxy.stop()

    assert (refused.value.status, refused.value.code) == (503, "storage_unavailable")
    assert health == 200
    assert (
        ready.status_code == 503 and ready.json()["checks"]["storage"] == "unavailable"
    )
    assert [m["text"] for m in history] == ["before the outage", "after the outage"]
    assert after["message"]["seq"] == before["message"]["seq"] + 1


async def test_a_draining_node_sends_its_devices_elsewhere(
    cluster: list[ServerProcess],
):
    """SIGTERM: devices are closed with 1012, reconnect to another node, catch up."""
    one, two, _ = cluster
    alice = ParleyClient(one.url, one.token("alice", "phone"))
    bob = ParleyClient(two.url, two.token("bob", "phone"))
    chat = await bob.open_private_chat("alice")

    live = alice.connect()
    await live.open()
    await asyncio.wait_for(live.synced.wait(), DELIVERY_S)
    one.process.send_signal(signal.SIGTERM)
    with pytest.raises(ConnectionClosedByServer) as closed:
        async for _ in live:
            pass
    cursor = live.cursor
    await bob.send(chat["id"], "while you moved")

    elsewhere = ParleyClient(two.url, two.token("alice", "phone"))
    async with elsewhere.connect(cursor) as again:
        frame = await again.wait_for(message_in(chat["id"]), DELIVERY_S)
    one.process.wait(15)
    for person in (alice, bob, elsewhere):
        await person.close()

    assert closed.value.close_code == 1012
    assert frame["message"]["text"] == "while you moved"
    # Uvicorn finishes its shutdown, then ends by the signal it caught.
    assert one.process.returncode in (0, -signal.SIGTERM)


async def test_a_node_without_redis_still_reaches_devices_on_other_nodes(
    tmp_path, cluster_env
):
    """Its hints are lost; the others' reconciliation delivers within seconds."""
    env = {**cluster_env, "PARLEY_RECONCILE_INTERVAL_S": "1"}
    healthy = ServerProcess(tmp_path / "healthy", env).start()
    cut_off = ServerProcess(
        tmp_path / "cut-off",
        {**env, "PARLEY_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
    )
    # Its readiness says degraded, which is still 200: it serves.
    await asyncio.to_thread(cut_off.start)
    alice = ParleyClient(healthy.url, healthy.token("alice", "phone"))
    bob = ParleyClient(cut_off.url, cut_off.token("bob", "phone"))
    chat = await bob.open_private_chat("alice")

    try:
        async with alice.connect() as phone:
            await asyncio.wait_for(phone.synced.wait(), DELIVERY_S)
            await bob.send(chat["id"], "through a node without redis")
            frame = await phone.wait_for(message_in(chat["id"]), DELIVERY_S)
    finally:
        await alice.close()
        await bob.close()
        healthy.stop()
        cut_off.stop()

    assert frame["message"]["text"] == "through a node without redis"
