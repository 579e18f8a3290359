"""A lean client side of the WebSocket protocol (RFC 6455), for driving load.

The driver holds thousands of sockets and reads tens of thousands of frames a
second on one core, so it speaks the protocol itself on an ``asyncio.Protocol``:
text frames in through a callback, text frames out without awaiting. It offers
no extension (no compression) and accepts any frame size the server sends.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
from collections.abc import Callable
from urllib.parse import urlsplit

_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_HANDSHAKE_LIMIT_BYTES = 16_384

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_ABNORMAL = 1006


class HandshakeError(Exception):
    """The server did not switch the connection to WebSocket."""


class WireClient(asyncio.Protocol):
    """One WebSocket: text frames in through ``on_text``, text frames out."""

    def __init__(
        self, host: str, port: int, path: str, on_text: Callable[[bytes], None]
    ) -> None:
        key = base64.b64encode(os.urandom(16))
        self._accept = base64.b64encode(hashlib.sha1(key + _ACCEPT_GUID).digest())
        self._request = (
            f"GET {path} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "\r\n"
        ).encode()
        self._on_text = on_text
        self._buffer = bytearray()
        self._fragments: list[bytes] | None = None
        self._upgraded = False
        self._close_sent = False
        self.transport: asyncio.Transport | None = None
        self.close_code: int | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int] = loop.create_future()

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._upgraded and not self._read_handshake():
            return
        self._read_frames()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(
                HandshakeError(f"connection lost before the upgrade ({exc})")
            )
        if not self.closed.done():
            self.closed.set_result(self.close_code or CLOSE_ABNORMAL)

    # -- sending ------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._upgraded and not self._close_sent and not self.closed.done()

    def send_text(self, payload: bytes) -> None:
        """Queue one text frame; the transport buffers what the socket refuses."""
        if self.is_open:
            self.transport.write(_client_frame(OP_TEXT, payload))

    def close(self, code: int = CLOSE_NORMAL) -> None:
        """Start the closing handshake; ``closed`` resolves when the TCP ends."""
        if self.transport is None or self.transport.is_closing():
            return
        if self._upgraded and not self._close_sent:
            self._close_sent = True
            self.transport.write(_client_frame(OP_CLOSE, code.to_bytes(2, "big")))
        else:
            self.transport.close()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame, as a lost network does."""
        if self.transport is not None:
            self.transport.abort()

    # -- receiving ----------------------------------------------------------

    def _read_handshake(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > _HANDSHAKE_LIMIT_BYTES:
                self._fail_handshake("the upgrade answer is too long")
            return False

        head = bytes(self._buffer[:end]).decode("latin-1")
        del self._buffer[: end + 4]
        status_line, *lines = head.split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()

        status = status_line.split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            self._fail_handshake(f"the server answered {status_line!r}")
            return False
        if headers.get("sec-websocket-accept", "").encode() != self._accept:
            self._fail_handshake("the server's Sec-WebSocket-Accept is wrong")
            return False

        self._upgraded = True
        self.opened.set_result(None)
        return True

    def _fail_handshake(self, reason: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(HandshakeError(reason))
        self.transport.close()

    def _read_frames(self) -> None:
        buffer = self._buffer
        size = len(buffer)
        offset = 0
        while size - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            length = second & 0x7F
            head = 2
            if length == 126:
                if size - offset < 4:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 4], "big")
                head = 4
            elif length == 127:
                if size - offset < 10:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 10], "big")
                head = 10
            masked = second & 0x80
            if masked:
                head += 4
            end = offset + head + length
            if end > size:
                break

            payload = bytes(buffer[offset + head : end])
            if masked:
                payload = _masked(
                    payload, bytes(buffer[offset + head - 4 : offset + head])
                )
            offset = end
            self._on_frame(bool(first & 0x80), first & 0x0F, payload)
        if offset:
            del buffer[:offset]

    def _on_frame(self, final: bool, opcode: int, payload: bytes) -> None:
        if opcode in (OP_TEXT, OP_BINARY):
            if final:
                self._on_text(payload)
            else:
                self._fragments = [payload]
        elif opcode == OP_CONTINUATION and self._fragments is not None:
            self._fragments.append(payload)
            if final:
                whole, self._fragments = b"".join(self._fragments), None
                self._on_text(whole)
        elif opcode == OP_PING:
            if not self._close_sent:
                self.transport.write(_client_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            self._on_close(payload)

    def _on_close(self, payload: bytes) -> None:
        self.close_code = (
            int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        )
        if not self._close_sent:
            self._close_sent = True
            self.transport.write(_client_frame(OP_CLOSE, payload[:2]))
        # The server closes the TCP connection first, after the close frames.
        self.transport.close()


async def connect(
    url: str, on_text: Callable[[bytes], None], timeout_s: float = 10.0
) -> WireClient:
    """Open a WebSocket to a ``ws://`` URL; raises HandshakeError or OSError."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname:
        raise ValueError(f"not a ws:// URL: {url}")
    port = parts.port or 80
    loop = asyncio.get_running_loop()
    client = WireClient(parts.hostname, port, parts.path or "/", on_text)

    try:
        async with asyncio.timeout(timeout_s):
            await loop.create_connection(lambda: client, parts.hostname, port)
            await client.opened
    except BaseException:
        client.abort()
        raise
    return client


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A final frame from client to server: always masked (RFC 6455, 5.3)."""
    length = len(payload)
    if length < 126:
        head = bytes((0x80 | opcode, 0x80 | length))
    elif length < 65_536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
    mask = random.randbytes(4)
    return head + mask + _masked(payload, mask)


def _masked(payload: bytes, mask: bytes) -> bytes:
    """XOR with the repeated 4-byte mask, as one big-integer operation."""
    length = len(payload)
    key = (mask * (length // 4 + 1))[:length]
    value = int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")
    return value.to_bytes(length, "little")
