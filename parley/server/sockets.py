"""Frames written straight to a device's socket.

Under Uvicorn's sans-I/O WebSocket protocol the gateway frames its text with
that protocol's own ``websockets`` state machine and writes the bytes to the
transport itself: no ASGI message, no coroutine and no task per frame. What
a connection is owed in one turn of the event loop leaves in one system
call, and one callback at the end of the turn (the node's ``Flusher``)
writes every socket that has frames: a fan-out to a thousand devices
schedules one. Frames interleave correctly with the protocol's own pings
and close. Under another server there is no such protocol, and the gateway
writes through ASGI's ``send``.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.websockets.websockets_sansio_impl import (
    WebSocketsSansIOProtocol,
)
from websockets.exceptions import InvalidState, ProtocolError


class SocketGone(ConnectionError):
    """The device's socket closed under a frame being written."""


class Flusher:
    """Writes, at the end of a turn of the event loop, the frames held by
    every socket that got some during it."""

    __slots__ = ("_held", "_due")

    def __init__(self) -> None:
        self._held: list[Socket] = []
        self._due = False

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

    __slots__ = ("_protocol", "_flusher", "_outbox")

    def __init__(self, protocol: WebSocketsSansIOProtocol, flusher: Flusher) -> None:
        self._protocol = protocol
        self._flusher = flusher
        self._outbox: list[bytes] = []

    @classmethod
    def under(cls, send: object, flusher: Flusher) -> Socket | None:
        """The socket under an ASGI ``send``, if Uvicorn's sans-I/O protocol
        serves it. Known shortcoming: this reads Uvicorn's protocol object,
        which is not a public interface; a version that changes it falls back
        to ASGI (slower, still correct) once ``under`` returns None."""
        protocol = getattr(send, "__self__", None)
        if not isinstance(protocol, WebSocketsSansIOProtocol):
            return None
        if not all(hasattr(protocol, name) for name in _PROTOCOL_PARTS):
            return None
        return cls(protocol, flusher)

    @property
    def transport(self) -> asyncio.BaseTransport:
        return self._protocol.transport

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
        """A frame can go now: the socket is open and its send buffer below
        the transport's high-water mark."""
        protocol = self._protocol
        return (
            protocol.writable.is_set()
            and not protocol.disconnected
            and not protocol.close_sent
            and not protocol.transport.is_closing()
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
            self._flusher.hold(self)
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


_PROTOCOL_PARTS = ("conn", "transport", "writable", "disconnected", "close_sent")
