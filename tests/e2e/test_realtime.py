"""Live connections: catch-up from a cursor, presence, heartbeats, slow readers."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import psutil
import pytest
import websockets

from parley.client import ConnectionClosedByServer, ParleyClient, ParleyClientError
from tests.e2e.conftest import DELIVERY_S, People
from tests.support import ServerProcess


def message_texts(frames: list[dict]) -> list[str]:
    return [frame["message"]["text"] for frame in frames if frame["type"] == "message"]


async def test_a_cut_connection_gets_exactly_what_it_missed_on_reconnect(
    people: People,
):
    """The phone loses its network, misses five messages, and gets those five."""
    bob = people.client("bob")
    phone = people.client("alice", "phone")
    chat = await bob.open_private_chat(people.id("alice"))
    await bob.send(chat["id"], "seen before the cut")

    live = phone.connect()
    await live.open()
    await live.wait_for(lambda f: f["type"] == "message", DELIVERY_S)
    cursor = live.cursor
    live.abort()

    for number in range(1, 6):
        await bob.send(chat["id"], f"missed {number}")

    async with phone.connect(cursor) as again:
        await asyncio.wait_for(again.synced.wait(), DELIVERY_S)
        caught_up = await again.drain(0.3)

    assert again.welcome["cursor"] == cursor
    assert message_texts(caught_up) == [f"missed {n}" for n in range(1, 6)]
    cursors = [frame["cursor"] for frame in caught_up if frame["type"] != "synced"]
    assert cursors == sorted(set(cursors))


async def test_a_long_catch_up_comes_many_events_to_a_frame_within_the_limit(
    people: People,
):
    """Sixty long messages missed: a few ``events`` frames, none over 64 KiB,
    their events in cursor order with nothing skipped, then ``synced``."""
    bob, alice = people.client("bob"), people.client("alice", "phone")
    chat = await bob.open_private_chat(people.id("alice"))
    for number in range(60):
        await bob.send(chat["id"], f"{number:02d} " + "long line " * 190)
    url = alice.base_url.replace("http", "ws") + "/v1/ws"

    frames = []
    async with websockets.connect(url, max_size=65_536) as live:
        await live.send(
            json.dumps({"type": "hello", "token": alice.token, "cursor": 0})
        )
        while not frames or frames[-1][1]["type"] != "synced":
            raw = await asyncio.wait_for(live.recv(), DELIVERY_S)
            frames.append((len(raw.encode()), json.loads(raw)))

    batches = [frame for _, frame in frames if frame["type"] == "events"]
    events = [event for batch in batches for event in batch["events"]]
    texts = [
        event["message"]["text"][:2] for event in events if event["type"] == "message"
    ]
    assert 2 <= len(batches) <= 6
    assert max(size for size, _ in frames) <= 65_536
    assert [event["cursor"] for event in events] == list(range(1, len(events) + 1))
    assert texts == [f"{number:02d}" for number in range(60)]
    assert frames[-1][1] == {"type": "synced", "cursor": len(events)}


async def test_a_device_without_a_cursor_resumes_from_what_it_acknowledged(
    people: People,
):
    """Reconnecting with no cursor starts after the last acknowledged event."""
    bob = people.client("bob")
    laptop = people.client("alice", "laptop")
    chat = await bob.open_private_chat(people.id("alice"))

    async with laptop.connect() as live:
        await bob.send(chat["id"], "first")
        await live.wait_for(lambda f: f["type"] == "message", DELIVERY_S)
        await live.ack(live.cursor)
        await live.ping()
    await bob.send(chat["id"], "second")

    async with laptop.connect() as again:
        await asyncio.wait_for(again.synced.wait(), DELIVERY_S)
        frames = await again.drain(0.3)

    assert message_texts(frames) == ["second"]


async def test_messages_that_arrive_during_catch_up_come_once_and_in_order(
    people: People,
):
    """Sends racing a reconnect are neither lost nor doubled."""
    bob = people.client("bob")
    phone = people.client("alice", "phone")
    chat = await bob.open_private_chat(people.id("alice"))
    for number in range(30):
        await bob.send(chat["id"], f"old {number}")

    async def keep_sending() -> None:
        for number in range(30):
            await bob.send(chat["id"], f"new {number}")

    async with phone.connect(0) as live:
        await keep_sending()
        frames = []
        while len(message_texts(frames)) < 60:
            frames.append(await live.next_event(DELIVERY_S))

    texts = message_texts(frames)
    assert texts == [f"old {n}" for n in range(30)] + [f"new {n}" for n in range(30)]


async def test_a_burst_of_live_events_comes_whole_and_in_cursor_order(
    people: People,
):
    """Two hundred sends at once share commits, so one turn of the server's
    loop owes alice's phone more frames than go straight to her socket; the
    rest wait their turn behind them, none lost, none doubled."""
    bob = people.client("bob")
    phone = people.client("alice", "phone")
    chat = await bob.open_private_chat(people.id("alice"))

    async with phone.connect(0) as live:
        await asyncio.gather(
            *(bob.send(chat["id"], f"burst {number}") for number in range(200))
        )
        frames = []
        while len(message_texts(frames)) < 200:
            frames.append(await live.next_event(DELIVERY_S))

    logged = [frame for frame in frames if frame["type"] not in ("synced", "presence")]
    cursors = [frame["cursor"] for frame in logged]
    assert cursors == list(range(1, len(logged) + 1))
    assert sorted(message_texts(frames)) == sorted(f"burst {n}" for n in range(200))


async def test_contacts_see_a_user_go_offline_with_a_last_seen_time(people: People):
    """bob disconnects; carol, who shares a group with him, is told at once."""
    alice, bob, carol = (
        people.client("alice"),
        people.client("bob"),
        people.client("carol"),
    )
    await alice.create_group("friends", [people.id("bob"), people.id("carol")])

    async with carol.connect() as carols_web:
        async with bob.connect():
            online = await carols_web.wait_for(
                lambda f: f["type"] == "presence" and f["online"], DELIVERY_S
            )
            assert (await carol.presence(people.id("bob")))["online"] is True
        offline = await carols_web.wait_for(
            lambda f: f["type"] == "presence" and not f["online"], DELIVERY_S
        )

    assert online["user_id"] == offline["user_id"] == people.id("bob")
    assert online["last_seen"] is None
    assert offline["last_seen"].endswith("+00:00")
    shown = await carol.presence(people.id("bob"))
    assert shown == {
        "user_id": people.id("bob"),
        "online": False,
        "last_seen": offline["last_seen"],
    }


async def test_a_user_stays_online_while_any_device_is_connected(people: People):
    """alice closes her phone but her laptop is still there."""
    alice_phone = people.client("alice", "phone")
    alice_laptop = people.client("alice", "laptop")
    bob = people.client("bob")
    await bob.open_private_chat(people.id("alice"))

    async with alice_laptop.connect():
        async with alice_phone.connect():
            pass
        await asyncio.sleep(0.2)
        assert (await bob.presence(people.id("alice")))["online"] is True
    await asyncio.sleep(0.2)
    assert (await bob.presence(people.id("alice")))["online"] is False


async def test_presence_is_private_to_people_who_share_a_chat(people: People):
    """A stranger cannot watch when someone is online."""
    stranger = people.client("mallory")

    with pytest.raises(ParleyClientError) as refused:
        await stranger.presence(people.id("alice"))

    assert refused.value.code == "user_not_found"


@pytest.mark.parametrize(
    "token, code",
    [(None, "token_missing"), ("not-a-jwt", "token_invalid")],
)
async def test_a_websocket_without_a_valid_token_is_refused(server, token, code):
    """The hello is answered with an error frame and a 4401 close."""
    url = server.url.replace("http", "ws") + "/v1/ws"
    async with websockets.connect(url) as socket_:
        await socket_.send(json.dumps({"type": "hello", "token": token}))
        frame = json.loads(await socket_.recv())
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket_.recv()

    assert frame["type"] == "error" and frame["code"] == code
    assert closed.value.rcvd.code == 4401


async def test_an_expired_token_is_refused(server: ServerProcess):
    """A token past its expiry (and the leeway) cannot be used."""
    client = ParleyClient(
        server.url, server.token("alice-expired", "phone", ttl_s=-120)
    )

    with pytest.raises(ParleyClientError) as over_http:
        await client.chats()
    with pytest.raises(ParleyClientError) as over_ws:
        async with client.connect():
            pass
    await client.close()

    assert over_http.value.code == over_ws.value.code == "token_expired"
    assert over_http.value.status == 401


async def test_bad_frames_get_error_frames_and_the_connection_stays(people: People):
    """Malformed, unknown and ill-typed frames are refused one by one."""
    alice = people.client("alice")
    chat = await alice.open_private_chat(people.id("bob"))
    url = alice.base_url.replace("http", "ws") + "/v1/ws"

    async with websockets.connect(url) as socket_:
        await socket_.send(json.dumps({"type": "hello", "token": alice.token}))
        assert json.loads(await socket_.recv())["type"] == "welcome"
        for bad in (
            "{not json",
            "[1, 2]",
            json.dumps({"type": "teleport"}),
            json.dumps({"type": "send", "chat_id": "one", "client_id": "x"}),
            json.dumps(
                {"type": "send", "chat_id": chat["id"], "client_id": "x", "text": 5}
            ),
            json.dumps({"type": "read", "chat_id": chat["id"], "seq": -1, "ref": "r6"}),
            json.dumps({"type": "ack", "cursor": 10**9}),
            json.dumps({"type": "hello"}),
        ):
            await socket_.send(bad)
        codes, refs = [], []
        while len(codes) < 8:
            frame = json.loads(await asyncio.wait_for(socket_.recv(), DELIVERY_S))
            if frame["type"] == "error":
                codes.append(frame["code"])
                refs.append(frame["ref"])
        await socket_.send(json.dumps({"type": "ping", "ref": "still-there"}))
        pong = json.loads(await asyncio.wait_for(socket_.recv(), DELIVERY_S))

    assert codes == [
        "malformed_frame",
        "malformed_frame",
        "unknown_frame_type",
        "invalid_field",
        "invalid_field",
        "invalid_field",
        "cursor_out_of_range",
        "hello_repeated",
    ]
    assert refs[5] == "r6"
    assert pong == {"type": "pong", "ref": "still-there"}
    assert (await alice.chat(chat["id"]))["last_seq"] == 0


async def test_a_frame_over_the_size_limit_closes_the_connection(people: People):
    """A frame larger than max_frame_bytes is cut at the protocol level."""
    alice = people.client("alice")
    url = alice.base_url.replace("http", "ws") + "/v1/ws"

    async with websockets.connect(url, max_size=None) as socket_:
        await socket_.send(json.dumps({"type": "hello", "token": alice.token}))
        await socket_.recv()
        await socket_.send("x" * 200_000)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(socket_.recv(), DELIVERY_S)

    assert closed.value.rcvd.code == 1009


def _raw_websocket(port: int, token: str, greeted: bool = True) -> socket.socket:
    """A WebSocket handshake by hand (and a hello, if ``greeted``) on a
    socket that will then read nothing."""
    raw = socket.create_connection(("127.0.0.1", port))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.sendall(
        b"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += raw.recv(1)
    assert answer.startswith(b"HTTP/1.1 101")
    if not greeted:
        return raw
    hello = json.dumps({"type": "hello", "token": token, "cursor": 0}).encode()
    mask = b"\x00\x00\x00\x00"
    header = bytes([0x81, 0x80 | 126]) + len(hello).to_bytes(2, "big")
    raw.sendall(header + mask + hello)
    return raw


@pytest.fixture
def strict_server(tmp_path, backend_env):
    """A server with short heartbeats."""
    process = ServerProcess(
        tmp_path / "data",
        env={
            **backend_env,
            "PARLEY_HEARTBEAT_INTERVAL_S": "0.5",
            "PARLEY_HEARTBEAT_TIMEOUT_S": "0.5",
        },
    ).start()
    yield process
    process.stop()


@pytest.fixture
def impatient_server(tmp_path, backend_env):
    """A server with a small send queue and a short send timeout."""
    process = ServerProcess(
        tmp_path / "data",
        env={
            **backend_env,
            "PARLEY_SEND_QUEUE_FRAMES": "20",
            "PARLEY_SEND_TIMEOUT_S": "1",
        },
    ).start()
    yield process
    process.stop()


async def test_a_silent_connection_is_found_dead_and_its_user_goes_offline(
    strict_server: ServerProcess,
):
    """bob's device stops answering pings: carol soon sees him offline."""
    carol = ParleyClient(strict_server.url, strict_server.token("carol", "web"))
    bob_token = strict_server.token("bob", "phone")
    await carol.open_private_chat("bob")

    async with carol.connect() as carols_web:
        raw = _raw_websocket(strict_server.port, bob_token)
        await carols_web.wait_for(
            lambda f: f["type"] == "presence" and f["online"], DELIVERY_S
        )
        offline = await carols_web.wait_for(
            lambda f: f["type"] == "presence" and not f["online"], DELIVERY_S
        )
    raw.close()
    await carol.close()

    assert offline["user_id"] == "bob" and offline["last_seen"] is not None


async def test_a_client_too_slow_to_read_is_cut_off(impatient_server: ServerProcess):
    """A device that reads nothing while messages pour in is disconnected."""
    server = impatient_server
    alice = ParleyClient(server.url, server.token("alice", "phone"))
    chat = await alice.open_private_chat("bob")
    raw = _raw_websocket(server.port, server.token("bob", "phone"))
    long_text = "\U0001f600" * 2000

    async with alice.connect() as phone:
        for number in range(1500):
            await phone.send(chat["id"], long_text, client_id=f"flood-{number}")
            if number % 100 == 99:
                metrics = (await alice._http.get("/metrics")).text
                if 'parley_connections_cut_total{reason="too_slow"}' in metrics:
                    break
    # Cut off, bob must not stay online: his socket never took the close;
    # nor may the server keep that socket, and its full buffers, open.
    async with asyncio.timeout(10):
        while (await alice.presence("bob"))["online"]:
            await asyncio.sleep(0.2)
    async with asyncio.timeout(10):
        while _server_holds(server, raw.getsockname()[1]):
            await asyncio.sleep(0.2)
    raw.close()
    await alice.close()

    assert 'parley_connections_cut_total{reason="too_slow"}' in metrics


@pytest.mark.parametrize("greeted", [True, False], ids=["after hello", "before"])
async def test_a_peer_that_pings_and_never_reads_loses_its_socket(
    impatient_server: ServerProcess, greeted: bool
):
    """The protocol answers every ping with a pong, whether or not the peer
    reads them: the server must not keep those pongs for it without end."""
    server = impatient_server
    raw = _raw_websocket(server.port, server.token("bob", "phone"), greeted)
    ping = bytes([0x89, 0x80 | 125]) + b"\x00\x00\x00\x00" + b"p" * 125
    burst = ping * 1000

    def flood() -> int:
        raw.settimeout(10)
        for sent in range(0, 400_000, 1000):
            try:
                raw.sendall(burst)
            except (ConnectionResetError, BrokenPipeError):
                return sent
        return -1

    sent = await asyncio.to_thread(flood)
    raw.close()
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{server.url}/metrics")).text

    # 400,000 pings would leave 50 MB of pongs unread.
    assert 0 < sent < 400_000
    assert 'parley_connections_cut_total{reason="too_slow"}' in metrics


async def test_a_device_that_leaves_during_its_catch_up_is_not_counted_too_slow(
    people: People,
):
    """Bob's phone says hello with a long backlog and closes at once: the
    server stops writing to it quietly; nothing is cut for being slow."""
    alice, bob = people.client("alice"), people.client("bob", "phone")
    chat = await alice.open_private_chat(people.id("bob"))
    for number in range(150):
        await alice.send(chat["id"], f"{number} " + "\U0001f600" * 1990)
    url = bob.base_url.replace("http", "ws") + "/v1/ws"

    for _ in range(3):
        async with websockets.connect(url, max_size=None) as live:
            await live.send(json.dumps({"type": "hello", "token": bob.token}))
            await live.recv()
    await asyncio.sleep(1)
    metrics = (await alice._http.get("/metrics")).text

    assert 'parley_connections_cut_total{reason="too_slow"}' not in metrics


def _server_holds(server: ServerProcess, client_port: int) -> bool:
    """Whether the server process still has a connection from ``client_port``."""
    connections = psutil.Process(server.process.pid).net_connections(kind="tcp")
    return any(c.raddr and c.raddr.port == client_port for c in connections)


async def test_a_replaced_connection_ends_its_event_stream(people: People):
    """A second connection of one device closes the first with 4009."""
    first = people.client("alice", "phone")
    second = people.client("alice", "phone")

    async with first.connect() as old:
        await asyncio.wait_for(old.synced.wait(), DELIVERY_S)
        async with second.connect():
            with pytest.raises(ConnectionClosedByServer) as ended:
                async for _ in old:
                    pass

    assert ended.value.close_code == 4009
