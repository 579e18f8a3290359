"""Frames written straight to a device's socket.

Under Uvicorn's sans-I/O WebSocket protocol the gateway frames its text with
that protocol's own ``websockets`` state machine and writes the bytes to the
transport itself: no ASGI message, no coroutine and no task per frame. What
a connection is owed in one turn of the event loop leaves in one system
call, and one callback at the end of the turn (the node's ``Sockets``)
writes every socket that has frames: a fan-out to a thousand devices
schedules one. Frames interleave correctly with the protocol's own pings
and close. Under another server there is no such protocol, and the gateway
writes through ASGI's ``send``.

The protocol answers each ping with a pong whatever the socket's buffer
holds, so ``Sockets`` also drops a socket whose peer has left more than
``MAX_UNREAD_BYTES`` unread: the gateway's own frames wait below the
high-water mark, and only a peer that sends and never reads gets there.
"""

from __future__ import annotations

import asyncio

import structlog
from uvicorn.protocols.websockets.websockets_sansio_impl import (
    WebSocketsSansIOProtocol,
)
from websockets.exceptions import InvalidState, ProtocolError

from parley import metrics

log = structlog.get_logger(__name__)

# Far above what the gateway leaves unread (the high-water mark, a turn's
# frames and one catch-up frame), far below what would hurt a node.
MAX_UNREAD_BYTES = 2 * 1024 * 1024
_WATCH_INTERVAL_S = 0.5
# Frames held for one socket in one turn before the next wait in its queue.
_MAX_HELD_FRAMES = 32


class SocketGone(ConnectionError):
    """The device's socket closed under a frame being written."""


class Sockets:
    """The node's live sockets: writes, at the end of a turn of the event
    loop, the frames held by every socket that got some during it, and
    drops a socket whose peer leaves too much unread."""

    __slots__ = ("_held", "_due", "_live", "_watching")

    def __init__(self) -> None:
        self._held: list[Socket] = []
        self._due = False
        self._live: set[Socket] = set()
        self._watching: asyncio.Task | None = None

    def open(self, send: object) -> Socket | None:
        """The socket under an ASGI ``send``, watched until ``close``."""
        socket = Socket.under(send, self)
        if socket is None:
            return None
        self._live.add(socket)
        if self._watching is None:
            self._watching = asyncio.create_task(self._watch())
        return socket

    def close(self, socket: Socket) -> None:
        self._live.discard(socket)

    async def _watch(self) -> None:
        """While any socket is open: drop those whose peers read nothing."""
        try:
            while self._live:
                await asyncio.sleep(_WATCH_INTERVAL_S)
                for socket in list(self._live):
                    if socket.unread_bytes > MAX_UNREAD_BYTES:
                        self._drop(socket)
        finally:
            self._watching = None

    def _drop(self, socket: Socket) -> None:
        metrics.CONNECTIONS_CUT.labels("too_slow").inc()
        log.warning(
            "socket dropped, its peer reads nothing",
            unread_bytes=socket.unread_bytes,
            peer=socket.peer,
        )
        self._live.discard(socket)
        socket.transport.abort()

    def hold(self, socket: Socket) -> None:
        self._held.append(socket)
        if not self._due:
            self._due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._due = False
        held, self._held = self._held, []
        for socket in held:
            socket.flush_quietly()


class Socket:
    """The write side of one device's WebSocket, with frames held for the
    end of the event loop's turn."""

    __slots__ = ("_protocol", "_sockets", "_outbox")

    def __init__(self, protocol: WebSocketsSansIOProtocol, sockets: Sockets) -> None:
        self._protocol = protocol
        self._sockets = sockets
        self._outbox: list[bytes] = []

    @classmethod
    def under(cls, send: object, sockets: Sockets) -> Socket | None:
        """The socket under an ASGI ``send``, if Uvicorn's sans-I/O protocol
        serves it. Known shortcoming: this reads Uvicorn's protocol object,
        which is not a public interface; a version that changes it falls back
        to ASGI (slower, still correct) once ``under`` returns None."""
        protocol = getattr(send, "__self__", None)
        if not isinstance(protocol, WebSocketsSansIOProtocol):
            return None
        if not all(hasattr(protocol, name) for name in _PROTOCOL_PARTS):
            return None
        return cls(protocol, sockets)

    @property
    def transport(self) -> asyncio.BaseTransport:
        return self._protocol.transport

    @property
    def unread_bytes(self) -> int:
        """Bytes written that the peer has not taken yet (in this process)."""
        return self._protocol.transport.get_write_buffer_size()

    @property
    def peer(self) -> str | None:
        client = self._protocol.client
        return f"{client[0]}:{client[1]}" if client else None

    @property
    def gone(self) -> bool:
        protocol = self._protocol
        return (
            protocol.disconnected
            or protocol.close_sent
            or protocol.transport.is_closing()
        )

    @property
    def ready(self) -> bool:
        """A frame can go now: the socket is open, its send buffer below the
        transport's high-water mark, and not many frames held this turn."""
        return (
            len(self._outbox) < _MAX_HELD_FRAMES
            and self._protocol.writable.is_set()
            and not self.gone
        )

    async def wait_ready(self) -> None:
        """Until the peer has read enough of the buffer, or the socket closed."""
        await self._protocol.writable.wait()
        if self.gone:
            raise SocketGone()

    def write_soon(self, frame: bytes) -> None:
        """Write ``frame`` at the end of this turn of the event loop, with
        whatever else the connection is owed by then."""
        if not self._outbox:
            self._sockets.hold(self)
        self._outbox.append(frame)

    def write(self, frame: bytes) -> None:
        """Write ``frame`` now, after anything held."""
        self._outbox.append(frame)
        self.flush()

    def flush(self) -> None:
        frames, self._outbox = self._outbox, []
        if not frames:
            return
        protocol = self._protocol
        if self.gone:
            raise SocketGone()
        connection = protocol.conn
        try:
            for frame in frames:
                connection.send_text(frame)
        except (InvalidState, ProtocolError):
            raise SocketGone() from None
        protocol.transport.write(b"".join(connection.data_to_send()))

    def flush_quietly(self) -> None:
        """Flush for nobody who waits: a socket gone meanwhile is the reading
        side's to clean up."""
        try:
            self.flush()
        except SocketGone:
            return


_PROTOCOL_PARTS = (
    "conn",
    "transport",
    "writable",
    "disconnected",
    "close_sent",
    "client",
)
