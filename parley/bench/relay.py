"""A bare WebSocket relay, written only as a floor for Parley's figures.

It speaks just enough of Parley's protocol for the bench's ``private``,
``group`` and ``idle`` workloads to run against it unchanged: ``hello`` is
answered by ``welcome`` and ``synced``; ``send`` by ``sent`` and a ``message``
frame, with the next cursor of each member, to every live device of every
member; ``read`` by ``ok``; ``ping`` by ``pong``; ``ack`` by nothing. A ``chat``
frame (``members``, a ``ref``) declares a chat and is answered by ``ok`` with
its ``chat_id``; it may come on a connection that sent no ``hello``.

Nothing is stored, no rule is checked, and the token is read, not verified.
It uses the WebSocket library and event loop that ``parley serve`` uses.

    python -m parley.bench.relay --port 9000
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import click
import jwt
import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

HEARTBEAT_S = 20.0
LISTEN_BACKLOG = 2048


@dataclass(slots=True)
class _User:
    cursor: int = 0
    connections: set[ServerConnection] = field(default_factory=set)


@dataclass(slots=True)
class _Chat:
    members: list[_User]
    member_ids: list[str]
    seq: int = 0


class Relay:
    """Users' cursors and live connections, and the declared chats."""

    def __init__(self) -> None:
        self._users: dict[str, _User] = {}
        self._chats: dict[int, _Chat] = {}

    def _user(self, user_id: str) -> _User:
        user = self._users.get(user_id)
        if user is None:
            user = self._users[user_id] = _User()
        return user

    async def serve(self, connection: ServerConnection) -> None:
        user: _User | None = None
        user_id = ""
        try:
            async for raw in connection:
                frame = orjson.loads(raw)
                if user is None and frame.get("type") == "hello":
                    user_id, user = await self._greet(connection, frame)
                elif frame.get("type") == "chat":
                    await self._declare(connection, frame)
                elif user is not None:
                    await self._command(connection, user_id, frame)
        except (ConnectionClosed, orjson.JSONDecodeError):
            return
        finally:
            if user is not None:
                user.connections.discard(connection)

    async def _greet(
        self, connection: ServerConnection, hello: dict
    ) -> tuple[str, _User]:
        claims = jwt.decode(hello.get("token", ""), options={"verify_signature": False})
        user_id, device_id = claims["sub"], claims.get("device", "default")
        user = self._user(user_id)
        user.connections.add(connection)

        welcome = {
            "type": "welcome",
            "user_id": user_id,
            "device_id": device_id,
            "cursor": user.cursor,
            "heartbeat_s": HEARTBEAT_S,
        }
        await connection.send(_text(welcome))
        await connection.send(_text({"type": "synced", "cursor": user.cursor}))
        return user_id, user

    async def _declare(self, connection: ServerConnection, frame: dict) -> None:
        member_ids = list(dict.fromkeys(frame["members"]))
        chat_id = len(self._chats) + 1
        members = [self._user(member_id) for member_id in member_ids]
        self._chats[chat_id] = _Chat(members, member_ids)
        answer = {"type": "ok", "ref": frame.get("ref"), "chat_id": chat_id}
        await connection.send(_text(answer))

    async def _command(
        self, connection: ServerConnection, user_id: str, frame: dict
    ) -> None:
        kind = frame.get("type")
        if kind == "send":
            await self._send(connection, user_id, frame)
        elif kind == "read":
            answer = {
                "type": "ok",
                "ref": frame.get("ref"),
                "chat_id": frame.get("chat_id"),
                "read_seq": frame.get("seq"),
                "unread_count": 0,
            }
            await connection.send(_text(answer))
        elif kind == "ping":
            await connection.send(_text({"type": "pong", "ref": frame.get("ref")}))

    async def _send(
        self, connection: ServerConnection, user_id: str, frame: dict
    ) -> None:
        chat = self._chats.get(frame.get("chat_id"))
        if chat is None:
            error = {"type": "error", "ref": frame.get("ref"), "code": "chat_not_found"}
            await connection.send(_text(error))
            return

        chat.seq += 1
        message = {
            "chat_id": frame["chat_id"],
            "seq": chat.seq,
            "sender_id": user_id,
            "client_id": frame.get("client_id"),
            "text": frame.get("text"),
            "images": [],
            "sent_at": _now_iso(),
        }
        body = orjson.dumps(message).decode()
        sent = {
            "type": "sent",
            "ref": frame.get("ref"),
            "duplicate": False,
            "message": message,
        }
        await connection.send(_text(sent))
        for member in chat.members:
            member.cursor += 1
            event = f'{{"type":"message","cursor":{member.cursor},"message":{body}}}'
            for device in list(member.connections):
                with contextlib.suppress(ConnectionClosed):
                    await device.send(event)


def _text(value: dict) -> str:
    return orjson.dumps(value).decode()


def _now_iso() -> str:
    now = datetime.fromtimestamp(time.time(), UTC)
    return now.isoformat(timespec="milliseconds")


async def run_relay(host: str, port: int, ready: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM or SIGINT."""
    relay = Relay()
    stop = asyncio.get_running_loop().create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.cancel)

    async with serve(
        relay.serve,
        host,
        port,
        compression=None,
        ping_interval=HEARTBEAT_S,
        ping_timeout=HEARTBEAT_S,
        max_size=65_536,
        backlog=LISTEN_BACKLOG,
    ):
        if ready is not None:
            ready.set()
        with contextlib.suppress(asyncio.CancelledError):
            await stop


def start_loop(coroutine) -> None:  # noqa: ANN001
    """Run on uvloop when it is installed, as ``parley serve`` does."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
        return
    uvloop.run(coroutine)


@click.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Loopback address."
)
@click.option("--port", type=int, default=9000, show_default=True)
def relay(host: str, port: int) -> None:
    """Run the bare relay that `parley bench --compare-relay` compares with."""
    from parley.bench.target import TargetError, check_loopback

    try:
        check_loopback(f"http://{host}:{port}")
    except TargetError as error:
        raise click.UsageError(str(error)) from None
    click.echo(f"relay on ws://{host}:{port}/v1/ws", err=True)
    start_loop(run_relay(host, port))


if __name__ == "__main__":
    relay()
