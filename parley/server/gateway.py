"""The WebSocket gateway: holds the live connections of this node's devices.

A connection starts with a ``hello`` frame that carries the device's cursor
(and its token, when the upgrade request had none). The gateway then sends
everything in the user's log after that cursor, from the store, and after a
``synced`` frame goes on with live events as the fan-out hints at them. What
comes from the store goes many events to an ``events`` frame. Frames
are written in cursor order by one writer task at a time, which exists only
while the connection has frames to write: an event that would leave a gap
sends the writer back to the store, so nothing is lost or doubled. The
usual live event, the next one of an idle connection, needs no writer: it
goes straight to the socket (``server/sockets.py``).

A device that reads too slowly fills its bounded queue and is cut off, and so
is one whose socket accepts nothing for ``send_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Iterator

import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect

from parley import metrics
from parley.auth import Identity, TokenVerifier
from parley.config import Settings
from parley.domain.messages import Event, EventKind, encode
from parley.domain.protocol import Ack, Hello, Ping, Read, Send, parse_frame, reference
from parley.errors import BadRequest, ParleyError
from parley.server.messenger import Messenger
from parley.server.sockets import Socket, SocketGone

log = structlog.get_logger(__name__)

HELLO_TIMEOUT_S = 10.0

_CLOSE_TIMEOUT_S = 2.0
_RECONCILE_CHUNK = 500

CLOSE_NORMAL = 1000
CLOSE_GONE = 1006
CLOSE_RESTART = 1012
CLOSE_TOO_SLOW = 4008
CLOSE_REPLACED = 4009


# Queued for a connection when fan-out hints may have been lost.
RESYNC = object()
# Queued first: the catch-up from the device's cursor, then ``synced``.
_CATCH_UP = object()


class Connection:
    """One device's live connection and the frames it is owed.

    An idle connection holds no task and no queue: a writer task and its
    queue exist only while there are frames to write. This keeps the memory
    of ten thousand idle devices small.
    """

    __slots__ = (
        "websocket",
        "identity",
        "connection_id",
        "messenger",
        "sent_cursor",
        "closed",
        "handler",
        "receiving",
        "_pending",
        "_writer",
        "_started",
        "_deadline",
        "socket",
    )

    def __init__(
        self,
        websocket: WebSocket,
        identity: Identity,
        connection_id: str,
        messenger: Messenger,
        cursor: int,
    ) -> None:
        self.websocket = websocket
        self.identity = identity
        self.connection_id = connection_id
        self.messenger = messenger
        self.sent_cursor = cursor
        self._pending: deque[Event | bytes | object] | None = None
        self._writer: asyncio.Task | None = None
        self.closed: tuple[int, str] | None = None
        self.handler: asyncio.Task | None = None
        self.receiving = False
        self._started = False
        self._deadline: asyncio.Timeout | None = None
        # Where frames go without ASGI, and what can drop the socket when a
        # close cannot get through: see ``serve``.
        self.socket: Socket | None = None

    def start(self) -> None:
        """Begin writing, after ``welcome``: the catch-up first, then what queued."""
        self._started = True
        self._pending = self._pending or deque()
        self._pending.appendleft(_CATCH_UP)
        self._writer = asyncio.create_task(self._write_pending())

    def offer(self, item: Event | bytes | object) -> None:
        """Queue a frame without waiting; a full queue means a client too slow."""
        if self.closed is not None:
            return
        if self._writer is None and not self._pending and self._write_now(item):
            return
        if self._pending is None:
            self._pending = deque()
        if len(self._pending) >= self.messenger.settings.send_queue_frames:
            self.cut(CLOSE_TOO_SLOW, "too_slow")
            return
        self._pending.append(item)
        if self._writer is None and self._started:
            self._writer = asyncio.create_task(self._write_pending())

    def _write_now(self, item: Event | bytes | object) -> bool:
        """Write ``item`` without a writer task when nothing is ahead of it
        and the socket takes it at once; False leaves it to the queue."""
        socket = self.socket
        if not self._started or socket is None or not socket.ready:
            return False
        if isinstance(item, bytes):
            socket.write_soon(item)
            return True
        if not isinstance(item, Event) or item.cursor > self.sent_cursor + 1:
            return False
        if item.cursor == self.sent_cursor + 1:
            socket.write_soon(item.frame())
            self.sent_cursor = item.cursor
            if item.body is not _fanned_out.body:
                _fanned_out.body = item.body
                _observe_delivery(item)
        return True

    def cut(self, code: int, reason: str) -> None:
        """Close the connection from the server's side, once."""
        if self.closed is not None:
            return
        self.closed = (code, reason)
        metrics.CONNECTIONS_CUT.labels(reason).inc()
        level = "info" if reason in ("replaced", "draining") else "warning"
        getattr(log, level)(
            "connection cut",
            reason=reason,
            user_id=self.identity.user_id,
            device_id=self.identity.device_id,
            queued_frames=len(self._pending or ()),
        )
        self._pending = None
        asyncio.create_task(self._close_socket(code, reason))

    async def _close_socket(self, code: int, reason: str) -> None:
        """Close; a peer that reads nothing cannot take the close handshake
        (nor the socket its buffered frames), so after a while the socket is
        dropped and the reading handler cancelled, which cleans up."""
        try:
            await asyncio.wait_for(
                _close_quietly(self.websocket, code, reason), _CLOSE_TIMEOUT_S
            )
        except TimeoutError:
            if self.socket is not None:
                self.socket.transport.abort()
        if self.receiving and self.handler is not None and not self.handler.done():
            self.handler.cancel()

    async def stop(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer

    async def _write_pending(self) -> None:
        try:
            async with asyncio.timeout(None) as self._deadline:
                while self._pending and self.closed is None:
                    await self._write_item(self._pending.popleft())
            self._pending = None
        except TimeoutError:
            self.cut(CLOSE_TOO_SLOW, "too_slow")
        except (WebSocketDisconnect, SocketGone, OSError, RuntimeError):
            # The device went away; its reading handler cleans up.
            self.closed = self.closed or (CLOSE_GONE, "gone")
            self._pending = None
        except ParleyError:
            self.cut(1011, "storage_unavailable")
        except Exception as error:  # noqa: BLE001 - logged, and the device reconnects
            log.error(
                "connection failed",
                user_id=self.identity.user_id,
                device_id=self.identity.device_id,
                error=type(error).__name__,
                exc_info=error,
            )
            self.cut(1011, "internal")
        finally:
            self._writer = None
            self._deadline = None

    async def _write_item(self, item: Event | bytes | object) -> None:
        if isinstance(item, bytes):
            await self._write(item)
        elif item is _CATCH_UP:
            await self._catch_up()
            await self._write(encode({"type": "synced", "cursor": self.sent_cursor}))
        elif item is RESYNC:
            await self._catch_up()
        elif item.cursor == self.sent_cursor + 1:
            await self._write_event(item)
        elif item.cursor > self.sent_cursor:
            # A gap: the hint outran what we hold. The store is the truth.
            await self._catch_up()

    async def _catch_up(self) -> None:
        """Send the log after ``sent_cursor`` from the store, many events to a
        frame: a device back from a day offline takes a few frames, not
        hundreds."""
        store = self.messenger.store
        settings = self.messenger.settings
        while True:
            # The deadline is for the socket: a slow read is the store's.
            self._deadline.reschedule(None)
            page = await store.events_after(
                self.identity.user_id, self.sent_cursor, settings.catch_up_page
            )
            for frame, last_cursor in _batches(page, settings.max_frame_bytes):
                await self._write(frame)
                self.sent_cursor = last_cursor
            if len(page) < settings.catch_up_page:
                return

    async def _write_event(self, event: Event) -> None:
        await self._write(event.frame())
        self.sent_cursor = event.cursor
        _observe_delivery(event)

    async def _write(self, frame: bytes) -> None:
        # The writer's one deadline moves on in steps of a tenth: a frame
        # gets at least 90 % of ``send_timeout_s``, for the cost of a
        # comparison rather than of a timer per frame.
        timeout_s = self.messenger.settings.send_timeout_s
        now = asyncio.get_running_loop().time()
        deadline = self._deadline.when()
        if deadline is None or deadline < now + timeout_s * 0.9:
            self._deadline.reschedule(now + timeout_s)
        socket = self.socket
        if socket is None:
            await self.websocket.send_text(frame.decode())
            return
        if not socket.ready:
            await socket.wait_ready()
        socket.write(frame)


class Gateway:
    """Accepts WebSockets, runs their connections, and routes fan-out to them."""

    def __init__(self, messenger: Messenger, verifier: TokenVerifier) -> None:
        self.messenger = messenger
        self.settings: Settings = messenger.settings
        self.verifier = verifier
        self._by_user: defaultdict[str, dict[str, Connection]] = defaultdict(dict)
        self._listening: dict[str, asyncio.Future[None]] = {}
        # Connection ids: unique across nodes and restarts, without a random
        # draw per connection.
        self._node_id = uuid.uuid4().hex[:12]
        self._counter = itertools.count(1)
        messenger.fanout.listen(self.deliver)
        messenger.fanout.on_resync(self.resync)

    def deliver(self, user_id: str, item: Event | bytes) -> None:
        """Hand a fan-out item to every live connection of the user on this node."""
        devices = self._by_user.get(user_id)
        if devices:
            # Offering never adds or removes a connection: no copy needed.
            for connection in devices.values():
                connection.offer(item)

    async def reconcile_forever(self, interval_s: float) -> None:
        """Now and then, compare each device's cursor with its log in the store.

        Hints can be lost between nodes (a node whose Redis is gone publishes
        none); this bounds how long a device goes without what is stored.
        """
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self._reconcile()
            except ParleyError:
                log.warning("reconciliation skipped, storage unavailable")

    async def _reconcile(self) -> None:
        user_ids = list(self._by_user)
        for start in range(0, len(user_ids), _RECONCILE_CHUNK):
            chunk = user_ids[start : start + _RECONCILE_CHUNK]
            newest = await self.messenger.store.last_cursors(chunk)
            for user_id in chunk:
                for connection in list(self._by_user.get(user_id, {}).values()):
                    if connection.sent_cursor < newest.get(user_id, 0):
                        connection.offer(RESYNC)

    def resync(self) -> None:
        """Fan-out hints may have been lost: every connection re-reads its log."""
        for devices in list(self._by_user.values()):
            for connection in list(devices.values()):
                connection.offer(RESYNC)

    @property
    def connection_count(self) -> int:
        return sum(len(devices) for devices in self._by_user.values())

    def drain(self) -> None:
        """Ask every device to reconnect, to another node if this one stops."""
        for devices in list(self._by_user.values()):
            for connection in list(devices.values()):
                connection.cut(CLOSE_RESTART, "draining")

    async def serve(self, websocket: WebSocket, socket: Socket | None = None) -> None:
        """Run one device's connection. ``socket``, when the server gives
        it, takes frames without ASGI and lets a connection whose peer reads
        nothing be dropped; without it, such a socket waits for the operating
        system's keepalive."""
        await websocket.accept()
        try:
            identity, hello = await self._greet(websocket)
            await self._check_cursor(identity, hello)
        except ParleyError as error:
            await _refuse(websocket, error, socket)
            return
        except WebSocketDisconnect:
            return

        connection = self._register(websocket, identity, hello)
        connection.socket = socket
        try:
            await self._open(connection, hello)
            await self._run(connection)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        except ParleyError as error:
            connection.cut(error.close_code, error.code)
        except asyncio.CancelledError:
            # Cancelled by ``Connection.cut`` when the socket would not close.
            if connection.closed is None:
                raise
            asyncio.current_task().uncancel()
        finally:
            await self._close(connection)

    async def _greet(self, websocket: WebSocket) -> tuple[Identity, Hello]:
        try:
            # A deadline on this task, not a task of its own as wait_for makes.
            async with asyncio.timeout(HELLO_TIMEOUT_S):
                raw = await _receive_text(websocket)
        except TimeoutError:
            raise BadRequest("hello_expected", "Send a hello frame first.") from None

        frame = parse_frame(raw, self.settings.max_frame_bytes)
        if not isinstance(frame, Hello):
            raise BadRequest("hello_expected", "The first frame must be a hello.")
        token = frame.token or _bearer(websocket.headers.get("authorization"))
        return self.verifier.verify(token), frame

    async def _check_cursor(self, identity: Identity, hello: Hello) -> None:
        """Refuse a cursor from the future before anything is recorded."""
        if hello.cursor is None:
            return
        last = await self.messenger.store.last_cursor(identity.user_id)
        if hello.cursor > last:
            raise BadRequest(
                "cursor_out_of_range",
                f"Cursor {hello.cursor} is past the newest event ({last}); "
                "start again from 0.",
            )

    def _register(
        self, websocket: WebSocket, identity: Identity, hello: Hello
    ) -> Connection:
        # The device in the id lets presence tell which devices are live.
        connection_id = f"{identity.device_id}/{self._node_id}-{next(self._counter)}"
        connection = Connection(
            websocket, identity, connection_id, self.messenger, hello.cursor or 0
        )
        devices = self._by_user[identity.user_id]
        if not devices:
            # Listen before the catch-up reads the log: no hint falls between.
            self._listening[identity.user_id] = asyncio.ensure_future(
                self.messenger.fanout.subscribe_user(identity.user_id)
            )
        # Known shortcoming: only a connection of the same device on this node
        # is replaced; one on another node stays until it drops. A "replaced"
        # hint through the fan-out, keyed by device, would reach it.
        previous = devices.pop(identity.device_id, None)
        if previous is not None:
            previous.cut(CLOSE_REPLACED, "replaced")
        devices[identity.device_id] = connection
        metrics.CONNECTIONS.inc()
        return connection

    async def _open(self, connection: Connection, hello: Hello) -> None:
        identity = connection.identity
        acked = await self.messenger.device_connected(
            identity, connection.connection_id
        )
        if hello.cursor is None:
            connection.sent_cursor = acked
        listening = self._listening.get(identity.user_id)
        if listening is not None:
            await asyncio.shield(listening)
            # Subscribed: later devices of the user need not wait, and an idle
            # user keeps no finished task.
            if self._listening.get(identity.user_id) is listening:
                del self._listening[identity.user_id]

        await connection.websocket.send_text(
            encode(
                {
                    "type": "welcome",
                    "user_id": identity.user_id,
                    "device_id": identity.device_id,
                    "cursor": connection.sent_cursor,
                    "heartbeat_s": self.settings.heartbeat_interval_s,
                }
            ).decode()
        )
        log.debug(
            "device connected", user_id=identity.user_id, device_id=identity.device_id
        )

    async def _run(self, connection: Connection) -> None:
        """Read the device's frames until it goes or the server cuts it off."""
        connection.start()
        connection.handler = asyncio.current_task()
        while connection.closed is None:
            connection.receiving = True
            try:
                raw = await _receive_text(connection.websocket)
            finally:
                connection.receiving = False
            await self._handle(connection, raw)

    async def _close(self, connection: Connection) -> None:
        identity = connection.identity
        devices = self._by_user.get(identity.user_id, {})
        if devices.get(identity.device_id) is connection:
            del devices[identity.device_id]
            if not devices:
                self._by_user.pop(identity.user_id, None)
                self._listening.pop(identity.user_id, None)
                await self.messenger.fanout.unsubscribe_user(identity.user_id)
        await connection.stop()
        metrics.CONNECTIONS.dec()
        try:
            await self.messenger.device_disconnected(identity, connection.connection_id)
        except ParleyError:
            log.warning("last seen not recorded", user_id=identity.user_id)
        log.debug(
            "device disconnected",
            user_id=identity.user_id,
            device_id=identity.device_id,
        )

    async def _handle(self, connection: Connection, raw: str | bytes) -> None:
        ref = None
        try:
            frame = parse_frame(raw, self.settings.max_frame_bytes)
            ref = getattr(frame, "ref", None)
            reply = await self._command(connection.identity, frame)
        except ParleyError as error:
            metrics.REFUSALS.labels(error.code).inc()
            reply = _error_frame(ref or _readable_ref(raw), error)
        except Exception as error:  # noqa: BLE001 - the device hears of it, not a crash
            log.error(
                "frame failed",
                user_id=connection.identity.user_id,
                device_id=connection.identity.device_id,
                error=type(error).__name__,
                exc_info=error,
            )
            reply = _error_frame(ref, ParleyError())
        if reply is not None:
            connection.offer(reply)

    async def _command(self, identity: Identity, frame: object) -> bytes | None:
        messenger = self.messenger
        match frame:
            case Send():
                message, created = await messenger.send(
                    identity, frame.chat_id, frame.client_id, frame.text, frame.images
                )
                return encode(
                    {
                        "type": "sent",
                        "ref": frame.ref,
                        "duplicate": not created,
                        "message": message.to_dict(),
                    }
                )
            case Read():
                position = await messenger.read(identity, frame.chat_id, frame.seq)
                return encode({"type": "ok", "ref": frame.ref, **position.to_dict()})
            case Ack():
                await messenger.ack(identity, frame.cursor)
                return None
            case Ping():
                return encode({"type": "pong", "ref": frame.ref})
            case Hello():
                raise BadRequest("hello_repeated", "Hello is sent once, first.")
        raise BadRequest("unknown_frame_type", "Unknown frame type.")


def _observe_delivery(event: Event) -> None:
    if event.sent_at_ms is not None and event.kind == EventKind.MESSAGE:
        latency_s = time.time() - event.sent_at_ms / 1000
        metrics.DELIVERY_SECONDS.observe(max(0.0, latency_s))


class _fanned_out:  # noqa: N801 - a namespace, not a type
    """The body of the message last timed on its way out. A message is timed
    once for all the frames of its fan-out that go out at once: they share
    this body, and a histogram per recipient would cost a large group more
    than its frames do."""

    body: bytes | None = None


_BATCH_HEAD = b'{"type":"events","events":['
_BATCH_TAIL = b"]}"


def _batches(events: list[Event], max_bytes: int) -> Iterator[tuple[bytes, int]]:
    """``events`` frames of at most ``max_bytes`` (an event alone is never
    split), each with the cursor of its last event."""
    framed: list[bytes] = []
    size = len(_BATCH_HEAD) + len(_BATCH_TAIL)
    last_cursor = 0
    for event in events:
        frame = event.frame()
        if framed and size + len(frame) + 1 > max_bytes:
            yield _BATCH_HEAD + b",".join(framed) + _BATCH_TAIL, last_cursor
            framed, size = [], len(_BATCH_HEAD) + len(_BATCH_TAIL)
        framed.append(frame)
        size += len(frame) + 1
        last_cursor = event.cursor
    if framed:
        yield _BATCH_HEAD + b",".join(framed) + _BATCH_TAIL, last_cursor


async def _receive_text(websocket: WebSocket) -> str | bytes:
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", CLOSE_NORMAL))
    if message.get("text") is not None:
        return message["text"]
    return message.get("bytes") or b""


def _readable_ref(raw: str | bytes) -> str | None:
    """The ``ref`` of a frame that was refused after it was read as JSON."""
    try:
        return reference(json.loads(raw))
    except (ValueError, RecursionError, AttributeError, TypeError, ParleyError):
        return None


def _bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


def _error_frame(ref: str | None, error: ParleyError) -> bytes:
    return encode({"type": "error", "ref": ref, **error.to_dict()})


async def _refuse(
    websocket: WebSocket, error: ParleyError, socket: Socket | None
) -> None:
    """Say why, and close; a peer that reads nothing cannot hear it, and
    loses its socket instead of holding it."""
    metrics.REFUSALS.labels(error.code).inc()
    try:
        async with asyncio.timeout(_CLOSE_TIMEOUT_S):
            await websocket.send_text(_error_frame(None, error).decode())
            await _close_quietly(websocket, error.close_code, error.code)
    except TimeoutError:
        if socket is not None:
            socket.transport.abort()
    except Exception:  # noqa: BLE001 - the peer may already be gone
        return


async def _close_quietly(websocket: WebSocket, code: int, reason: str) -> None:
    try:
        await websocket.close(code, reason)
    except Exception:  # noqa: BLE001 - closing a socket the peer already closed
        return
