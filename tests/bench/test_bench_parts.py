"""The bench's parts on their own: the wire, the tracker, the rules, the relay."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
import websockets

from parley.bench import report as reports
from parley.bench import wire
from parley.bench.processes import Pinning, ServerProcesses
from parley.bench.runner import RelayProcess
from parley.bench.target import RelayTarget, TargetError, check_loopback
from parley.bench.tracker import Delivery, Tracker, percentiles_ms
from parley.client import ParleyClient

# -- the wire ----------------------------------------------------------------------


class _Transport:
    """Collects what a protocol writes, as a socket would carry it."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def _upgraded(texts: list[bytes]) -> tuple[wire.WireClient, _Transport]:
    client = wire.WireClient("127.0.0.1", 1, "/v1/ws", texts.append)
    transport = _Transport()
    client.connection_made(transport)
    key = transport.written.split(b"Sec-WebSocket-Key: ")[1].split(b"\r\n")[0]
    accept = wire.base64.b64encode(wire.hashlib.sha1(key + wire._ACCEPT_GUID).digest())
    client.data_received(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    transport.written.clear()
    return client, transport


def _server_frame(opcode: int, payload: bytes, final: bool = True) -> bytes:
    first = (0x80 if final else 0) | opcode
    if len(payload) < 126:
        return bytes((first, len(payload))) + payload
    if len(payload) < 65_536:
        return bytes((first, 126)) + len(payload).to_bytes(2, "big") + payload
    return bytes((first, 127)) + len(payload).to_bytes(8, "big") + payload


def test_masking_twice_gives_back_the_payload():
    """The XOR mask is its own inverse and matches a byte-by-byte XOR."""
    payload, mask = os.urandom(1001), os.urandom(4)
    masked = wire._masked(payload, mask)
    assert masked == bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert wire._masked(masked, mask) == payload
    assert wire._masked(b"", mask) == b""


async def test_frames_split_anywhere_arrive_whole_and_in_order():
    """Short, 16-bit and 64-bit lengths and fragments, fed a byte at a time."""
    texts: list[bytes] = []
    client, _ = _upgraded(texts)
    stream = (
        _server_frame(wire.OP_TEXT, b"short")
        + _server_frame(wire.OP_TEXT, b"m" * 300)
        + _server_frame(wire.OP_TEXT, b"l" * 70_000)
        + _server_frame(wire.OP_TEXT, b"frag", final=False)
        + _server_frame(wire.OP_CONTINUATION, b"ment")
    )
    await asyncio.sleep(0)
    assert client.opened.done()
    for i in range(0, len(stream), 997):
        client.data_received(stream[i : i + 997])
    assert texts == [b"short", b"m" * 300, b"l" * 70_000, b"fragment"]


async def test_a_ping_is_answered_with_a_masked_pong_of_the_same_payload():
    """What the client writes is a masked pong frame the server can unmask."""
    client, transport = _upgraded([])
    client.data_received(_server_frame(wire.OP_PING, b"beat"))
    frame = bytes(transport.written)
    assert frame[0] == 0x80 | wire.OP_PONG and frame[1] == 0x80 | 4
    assert wire._masked(frame[6:], frame[2:6]) == b"beat"


async def test_a_wrong_accept_key_fails_the_handshake():
    """A server that did not compute the accept key is not a WebSocket."""
    client = wire.WireClient("127.0.0.1", 1, "/", lambda _: None)
    client.connection_made(_Transport())
    client.data_received(
        b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: nope\r\n\r\n"
    )
    with pytest.raises(wire.HandshakeError):
        await client.opened


# -- the tracker -------------------------------------------------------------------


def test_the_tracker_counts_lost_doubled_and_stray_messages():
    """One of two recipients got a message twice; the other never got it."""
    tracker = Tracker("t1")
    _, client_id = tracker.new_message(chat_id=7, recipients=2)
    first, second = Delivery(), Delivery()

    tracker.on_message(first, True, client_id)
    tracker.on_message(first, True, client_id)
    tracker.on_message(second, True, "t0-0")

    figures = tracker.messages()
    assert figures["delivered"] == 1 and figures["doubled"] == 1
    assert figures["lost"] == 1 and figures["stray"] == 1
    assert tracker.last_latencies_ns == []


def test_a_refused_send_is_owed_to_nobody():
    """Refusals are counted by code and are not losses."""
    tracker = Tracker("t2")
    _, client_id = tracker.new_message(chat_id=1, recipients=3)
    tracker.on_refused(client_id, "chat_not_found")
    assert tracker.messages()["lost"] == 0
    assert tracker.refused == {"chat_not_found": 1}


def test_percentiles_are_nearest_rank_in_milliseconds():
    """p50 of 1..100 ms is 50 ms, p99 is 99 ms, and the max is 100 ms."""
    samples = [ms * 1_000_000 for ms in range(100, 0, -1)]
    figures = percentiles_ms(samples)
    assert (figures["p50"], figures["p99"], figures["max"]) == (50, 99, 100)
    assert percentiles_ms([])["p99"] is None


# -- targets and reports -------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://127.9.9.9:1", "http://localhost:80"]
)
def test_loopback_urls_are_accepted(url: str):
    """Any address of 127.0.0.0/8, and localhost."""
    assert check_loopback(url)[1] in (8080, 1, 80)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:8080",
        "http://192.168.1.2",
        "http://169.254.169.254/latest",
        "http://example.com",
        "ws://127.0.0.1:8080",
    ],
)
def test_any_other_address_is_refused_before_anything_is_sent(url: str):
    """The driver loads nothing but servers on this machine."""
    with pytest.raises(TargetError):
        check_loopback(url)


def test_no_capacity_file_without_all_four_figures():
    """`parley capacity` requires all four: a partial run gives no file."""
    report = {"per_node": {"sends_per_s": 10.0}, "date": "2026-01-01T00:00:00"}
    assert reports.capacity_document(report, "test machine") is None


# -- processes -----------------------------------------------------------------------


@pytest.mark.skipif(
    not {0, 1} <= os.sched_getaffinity(0), reason="pinning needs cores 0 and 1"
)
def test_pinning_moves_every_thread_and_restoring_puts_them_back():
    """A server pinned to core 0 and the driver to core 1, then as before."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        before_child, before_self = (
            os.sched_getaffinity(child.pid),
            os.sched_getaffinity(0),
        )
        pinning = Pinning()
        pinning.pin_server(ServerProcesses([child.pid]))
        pinning.pin_driver()
        assert os.sched_getaffinity(child.pid) == {0}
        assert os.sched_getaffinity(0) == {1}

        pinning.restore()
        assert os.sched_getaffinity(child.pid) == before_child
        assert os.sched_getaffinity(0) == before_self
    finally:
        child.kill()
        child.wait()


# -- the relay -----------------------------------------------------------------------


@pytest.fixture
def relay_url():
    relay = RelayProcess().start()
    yield relay.url
    relay.stop()


async def test_the_relay_speaks_enough_of_parley_for_the_project_client(relay_url):
    """Hello, welcome, synced; send, sent, and a message frame with a cursor."""
    target = RelayTarget(relay_url)
    chat_id = await target.open_private_chat("alice", "bob")
    await target.close()

    alice = ParleyClient(relay_url, target.token("alice", "phone"))
    bob = ParleyClient(relay_url, target.token("bob", "laptop"))
    async with alice.connect() as phone, bob.connect() as laptop:
        assert laptop.welcome["user_id"] == "bob"
        await asyncio.wait_for(laptop.synced.wait(), 5)

        sent = await phone.send(chat_id, "hello", client_id="c-1")
        assert sent["message"]["seq"] == 1 and sent["message"]["sender_id"] == "alice"
        frame = await laptop.wait_for(lambda f: f["type"] == "message")
        assert frame["cursor"] == 1 and frame["message"]["client_id"] == "c-1"

        assert (await phone.read(chat_id, 1))["type"] == "ok"
        assert (await laptop.ping())["type"] == "pong"


async def test_the_relay_declares_chats_without_a_hello(relay_url):
    """A setup frame alone gets an ``ok`` with a new chat id each time."""
    url = "ws" + relay_url[len("http") :] + "/v1/ws"
    async with websockets.connect(url) as socket:
        ids = []
        for members in (["a", "b"], ["a", "b", "c"]):
            await socket.send(
                json.dumps({"type": "chat", "ref": "x", "members": members})
            )
            answer = json.loads(await socket.recv())
            assert answer["type"] == "ok" and answer["ref"] == "x"
            ids.append(answer["chat_id"])
    assert ids[1] == ids[0] + 1
