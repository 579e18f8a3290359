"""Hostile clients: oversized bodies, broken frames, dropped handshakes, odd ids.

Each case here once got a wrong answer from the server; each is kept so that
it never does again.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import stat
import struct

import httpx
import pytest
import websockets
from PIL import Image

from parley.client import ParleyClientError
from tests.e2e.conftest import DELIVERY_S, People
from tests.support import ServerProcess


async def test_an_oversized_chunked_body_is_refused_too(people: People):
    """No Content-Length: still 413 body_too_large, not a parse error."""
    alice = people.client("alice")

    async def chunks():
        yield b'{"title": "huge", "members": ['
        for number in range(20_000):
            yield b'"user%d",' % number
        yield b'"last"]}'

    response = await alice._http.post(
        "/v1/chats/groups",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


async def test_an_event_cursor_from_the_future_is_refused_over_http(people: People):
    alice = people.client("alice")
    await alice.open_private_chat(people.id("bob"))

    with pytest.raises(ParleyClientError) as refused:
        await alice.events(after=10**6)

    assert refused.value.code == "cursor_out_of_range"


async def test_an_oversized_json_body_is_refused_before_it_is_read(people: People):
    """A megabyte of JSON gets 413 body_too_large, with or without a token."""
    alice = people.client("alice")
    members = [f"user{n}" for n in range(60_000)]
    body = json.dumps({"title": "huge", "members": members})

    async with httpx.AsyncClient(base_url=alice.base_url) as anonymous:
        unauthenticated = await anonymous.post("/v1/chats/groups", content=body)
    with pytest.raises(ParleyClientError) as refused:
        await alice.create_group("huge", members)

    assert unauthenticated.status_code == 413
    assert unauthenticated.json()["error"]["code"] == "body_too_large"
    assert (refused.value.status, refused.value.code) == (413, "body_too_large")


@pytest.mark.parametrize(
    "body, code",
    [
        ('{"seq": true}', "invalid_field"),
        ('{"seq": "1"}', "invalid_field"),
        ('{"seq": 1.0}', "invalid_field"),
        ('{"seq": ' + "9" * 5000 + "}", "malformed_json"),
        (b'{"seq": "\xff"}', "malformed_json"),
    ],
)
async def test_http_numbers_are_as_strict_as_the_websockets(
    people: People, body: str | bytes, code: str
):
    """Booleans, strings and floats are not sequence numbers; neither is noise."""
    alice = people.client("alice")
    chat = await alice.open_private_chat(people.id("bob"))

    response = await alice._http.post(
        f"/v1/chats/{chat['id']}/read",
        content=body,
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize(
    "fields",
    [
        {"text": "no client id"},
        {"client_id": 5, "text": "a number for an id"},
        {"client_id": "c1", "text": 5},
        {"client_id": "c2", "text": "x", "images": "not a list"},
        {"client_id": "c3", "text": "x", "images": [5]},
    ],
    ids=["no client id", "numeric id", "numeric text", "images", "image id"],
)
async def test_a_bad_send_gets_the_same_code_over_http_and_the_websocket(
    people: People, fields: dict
):
    """One set of rules: the HTTP body is not judged by a stricter model."""
    alice = people.client("alice")
    chat = await alice.open_private_chat(people.id("bob"))

    response = await alice._http.post(
        f"/v1/chats/{chat['id']}/messages",
        content=json.dumps(fields),
        headers={"Content-Type": "application/json"},
    )
    async with alice.connect() as phone:
        with pytest.raises(ParleyClientError) as refused:
            await phone._request({"type": "send", "chat_id": chat["id"], **fields})

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": refused.value.code,
        "message": refused.value.message,
    }


async def test_http_refusals_are_counted_by_code_as_frames_are(people: People):
    """A missing token and an unknown chat show in parley_refusals_total."""
    alice = people.client("alice")

    async def refusals(code: str) -> float:
        text = (await alice._http.get("/metrics")).text
        line = f'parley_refusals_total{{code="{code}"}} '
        found = [row for row in text.splitlines() if row.startswith(line)]
        return float(found[0].split()[-1]) if found else 0.0

    missing, unknown = await refusals("token_missing"), await refusals("chat_not_found")
    await alice._http.get("/v1/chats", headers={"Authorization": ""})
    with pytest.raises(ParleyClientError):
        await alice.chat(999_999)

    assert await refusals("token_missing") == missing + 1
    assert await refusals("chat_not_found") == unknown + 1


async def test_an_acknowledgement_from_someone_never_seen_is_refused_not_a_crash(
    people: People,
):
    stranger = people.client("newcomer")

    with pytest.raises(ParleyClientError) as refused:
        await stranger.ack_events(5)

    assert (refused.value.status, refused.value.code) == (400, "cursor_out_of_range")


async def test_a_title_that_is_not_text_is_refused(people: People):
    alice = people.client("alice")

    for title in ("bad \udc80 title", "bell \x07", "two\nlines"):
        with pytest.raises(ParleyClientError) as refused:
            await alice.create_group(title, [people.id("bob")])
        assert refused.value.code == "invalid_title"


async def test_an_id_with_a_trailing_newline_is_refused(people: People):
    alice = people.client("alice")

    with pytest.raises(ParleyClientError) as refused:
        await alice.open_private_chat(people.id("bob") + "\n")

    assert refused.value.code == "invalid_user_id"


async def test_a_ref_that_is_not_text_gets_an_error_frame_not_silence(people: People):
    """A lone surrogate in ref: refused with an error, and the connection lives."""
    alice = people.client("alice")
    chat = await alice.open_private_chat(people.id("bob"))
    url = alice.base_url.replace("http", "ws") + "/v1/ws"

    async with websockets.connect(url) as live:
        await live.send(json.dumps({"type": "hello", "token": alice.token}))
        await live.recv()
        frame = json.dumps(
            {"type": "send", "chat_id": chat["id"], "client_id": "c1", "text": "x"}
        )
        # json.dumps escapes a lone surrogate, as a browser's JSON would.
        await live.send(frame[:-1] + ', "ref": "\\ud800"}')
        frames = []
        while not any(f["type"] == "error" for f in frames):
            frames.append(json.loads(await asyncio.wait_for(live.recv(), DELIVERY_S)))
        await live.send(json.dumps({"type": "ping", "ref": "ok"}))
        while frames[-1]["type"] != "pong":
            frames.append(json.loads(await asyncio.wait_for(live.recv(), DELIVERY_S)))

    assert [f["code"] for f in frames if f["type"] == "error"] == ["invalid_field"]
    assert (await alice.chat(chat["id"]))["last_seq"] == 0


async def test_a_hello_token_that_is_not_ascii_is_refused(people: People):
    url = people.server.url.replace("http", "ws") + "/v1/ws"

    async with websockets.connect(url) as live:
        await live.send('{"type":"hello","token":"\\ud800abc"}')
        frame = json.loads(await asyncio.wait_for(live.recv(), DELIVERY_S))

    assert frame["type"] == "error" and frame["code"] == "invalid_field"


async def test_a_refused_hello_records_nothing(people: People):
    """A cursor from the future: refused, and bob never appears online."""
    alice, bob = people.client("alice"), people.client("bob")
    await alice.open_private_chat(people.id("bob"))
    url = bob.base_url.replace("http", "ws") + "/v1/ws"

    async with websockets.connect(url) as live:
        await live.send(
            json.dumps({"type": "hello", "token": bob.token, "cursor": 10**6})
        )
        frame = json.loads(await asyncio.wait_for(live.recv(), DELIVERY_S))

    assert frame["code"] == "cursor_out_of_range"
    assert await alice.presence(people.id("bob")) == {
        "user_id": people.id("bob"),
        "online": False,
        "last_seen": None,
    }


async def test_a_device_that_drops_during_the_handshake_leaves_no_ghost(people: People):
    """hello, then a reset before welcome: bob is not left online."""
    alice, bob = people.client("alice"), people.client("bob")
    await alice.open_private_chat(people.id("bob"))
    port = int(bob.base_url.rsplit(":", 1)[1])

    for _ in range(5):
        raw = _handshake(port)
        _send_text(raw, json.dumps({"type": "hello", "token": bob.token}))
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()
    await asyncio.sleep(1.0)

    assert (await alice.presence(people.id("bob")))["online"] is False


async def test_a_removed_member_sees_the_chat_as_it_was(people: People):
    """No member list, admin or live receipts after removal; history stays."""
    alice, bob = people.client("alice"), people.client("bob")
    group = await alice.create_group("club", [people.id("bob")])
    sent = await alice.send(group["id"], "before")
    await alice.remove_member(group["id"], people.id("bob"))
    await alice.add_member(group["id"], people.id("carol"))

    seen = await bob.chat(group["id"])
    with pytest.raises(ParleyClientError) as refused:
        await bob.receipts(group["id"], sent["message"]["seq"])

    assert (seen["active"], seen["members"], seen["admin_id"]) == (False, [], None)
    assert refused.value.code == "chat_not_found"
    assert [m["text"] for m in await bob.history(group["id"])] == ["before"]


async def test_the_chat_list_comes_in_pages(people: People):
    alice = people.client("alice")
    for name in ("bob", "carol", "dave"):
        chat = await alice.open_private_chat(people.id(name))
        await alice.send(chat["id"], f"to {name}")

    first = await alice._call("GET", "/v1/chats", params={"limit": 2})
    second = await alice._call("GET", "/v1/chats", params={"limit": 2, "offset": 2})

    assert [c["last_message"]["text"] for c in first["chats"]] == [
        "to dave",
        "to carol",
    ]
    assert first["next_offset"] == 2
    assert [c["last_message"]["text"] for c in second["chats"]] == ["to bob"]
    assert second["next_offset"] is None


async def test_a_small_animation_of_huge_frames_is_refused(people: People):
    """Four 6000x6000 frames in a tiny PNG would take gigabytes to decode."""
    alice = people.client("alice")
    frames = [Image.new("L", (6000, 6000), shade) for shade in (0, 64, 128, 255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "PNG", save_all=True, append_images=frames[1:])

    with pytest.raises(ParleyClientError) as refused:
        await alice.upload_image(buffer.getvalue())

    assert refused.value.code == "image_too_many_pixels"


def test_the_database_is_readable_by_parley_only(server: ServerProcess):
    """Messages on disk are not world-readable."""
    database = server.data_dir / "parley.db"
    if not database.exists():
        pytest.skip("this backend keeps no local database")

    mode = stat.S_IMODE(database.stat().st_mode)

    assert mode & 0o077 == 0


def _handshake(port: int) -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", port))
    raw.sendall(
        b"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += raw.recv(1)
    return raw


def _send_text(raw: socket.socket, text: str) -> None:
    data = text.encode()
    header = bytes([0x81, 0x80 | 126]) + len(data).to_bytes(2, "big")
    raw.sendall(header + b"\x00\x00\x00\x00" + data)
