"""Fan-out between server nodes over Redis pub/sub: one channel per user.

A node subscribes to the channels of the users it holds live connections for,
and publishes every event to the channels of its users. Redis keeps nothing:
the hint is lost when no node listens, and that is fine, because the store is
the truth. When the connection to Redis breaks, publishing is skipped (sends
are still stored and acknowledged), and once it is back every local connection
reads its log from the store again, so nothing missed in between stays missed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from parley.domain.messages import Event
from parley.ports import Listener

log = structlog.get_logger(__name__)

_RECONNECT_DELAYS_S = (0.1, 0.25, 0.5, 1.0, 2.0)
_SUBSCRIBE_TIMEOUT_S = 2.0


def encode_item(item: Event | bytes) -> bytes:
    """Event: ``E <cursor> <kind> <sent_at_ms|-> <body>``; frame: ``F <frame>``."""
    if isinstance(item, bytes):
        return b"F " + item
    sent_at = b"-" if item.sent_at_ms is None else b"%d" % item.sent_at_ms
    return b"E %d %s %s " % (item.cursor, item.kind.encode(), sent_at) + item.body


def decode_item(user_id: str, data: bytes) -> Event | bytes:
    if data.startswith(b"F "):
        return data[2:]
    _, cursor, kind, sent_at, body = data.split(b" ", 4)
    return Event(
        user_id,
        int(cursor),
        kind.decode(),
        body,
        None if sent_at == b"-" else int(sent_at),
    )


class RedisFanout:
    """Publishes to and listens on per-user channels of one Redis."""

    def __init__(self, url: str, prefix: str = "parley:") -> None:
        self._redis = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._channel_prefix = f"{prefix}user:"
        # A channel no one publishes to, so that the node's reader always has one.
        self._idle_channel = f"{prefix}node"
        self._listener: Listener | None = None
        self._on_resync: Callable[[], None] | None = None
        self._users: set[str] = set()
        self._pubsub = None
        self._reader: asyncio.Task | None = None
        self._healthy = False
        self._changes: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._confirmations: dict[str, list[asyncio.Future[None]]] = {}

    def listen(self, listener: Listener) -> None:
        self._listener = listener

    def on_resync(self, callback: Callable[[], None]) -> None:
        """Called when hints may have been lost: local devices must re-read."""
        self._on_resync = callback

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read_forever())

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._redis.aclose()

    def healthy(self) -> bool:
        return self._healthy

    async def subscribe_user(self, user_id: str) -> None:
        """Listen for the user's hints; returns once Redis confirmed it.

        A device reads its log from the store only after this, so an event
        committed after that read cannot have been published unheard.
        """
        self._users.add(user_id)
        if not self._healthy:
            return
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations.setdefault(self._channel_prefix + user_id, []).append(
            confirmed
        )
        self._changes.put_nowait(("subscribe", user_id))
        try:
            await asyncio.wait_for(confirmed, _SUBSCRIBE_TIMEOUT_S)
        except TimeoutError:
            log.warning("fan-out subscription not confirmed", user_id=user_id)

    async def unsubscribe_user(self, user_id: str) -> None:
        self._users.discard(user_id)
        self._changes.put_nowait(("unsubscribe", user_id))

    async def publish(self, user_ids: list[str], item: Event | bytes) -> None:
        data = encode_item(item)
        await self._publish([(user_id, data) for user_id in user_ids])

    async def publish_events(self, events: list[Event]) -> None:
        await self._publish([(event.user_id, encode_item(event)) for event in events])

    async def _publish(self, messages: list[tuple[str, bytes]]) -> None:
        if not messages:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id, data in messages:
                    pipe.publish(self._channel_prefix + user_id, data)
                await pipe.execute()
        except (RedisError, OSError) as error:
            # The events are stored; devices on other nodes catch up when
            # Redis is back (or at the gateway's next reconciliation), and
            # those on this node are told directly.
            log.warning("fan-out degraded, redis unavailable", error=str(error))
            self._healthy = False
            if self._listener is not None:
                for user_id, data in messages:
                    if user_id in self._users:
                        self._listener(user_id, decode_item(user_id, data))

    async def _read_forever(self) -> None:
        attempt = 0
        while True:
            try:
                await self._read_until_broken()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as error:
                if self._healthy:
                    log.warning("fan-out connection lost", error=str(error))
                self._healthy = False
            delay = _RECONNECT_DELAYS_S[min(attempt, len(_RECONNECT_DELAYS_S) - 1)]
            attempt += 1
            await asyncio.sleep(delay)

    async def _read_until_broken(self) -> None:
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(self._idle_channel)
            users = list(self._users)
            if users:
                await pubsub.subscribe(*(self._channel_prefix + user for user in users))
            await self._redis.ping()
            was_healthy, self._healthy = self._healthy, True
            log.info("fan-out connected", users=len(users))
            if not was_healthy and self._on_resync is not None:
                self._on_resync()

            while True:
                await self._apply_changes(pubsub)
                message = await pubsub.get_message(timeout=0.05)
                if message is None:
                    continue
                if message["type"] == "message":
                    self._deliver(message["channel"], message["data"])
                elif message["type"] == "subscribe":
                    self._confirm(message["channel"].decode())
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

    async def _apply_changes(self, pubsub) -> None:  # noqa: ANN001
        while not self._changes.empty():
            action, user_id = self._changes.get_nowait()
            channel = self._channel_prefix + user_id
            if action == "subscribe" and user_id in self._users:
                await pubsub.subscribe(channel)
            elif action == "unsubscribe" and user_id not in self._users:
                await pubsub.unsubscribe(channel)

    def _confirm(self, channel: str) -> None:
        for confirmed in self._confirmations.pop(channel, []):
            if not confirmed.done():
                confirmed.set_result(None)

    def _deliver(self, channel: bytes, data: bytes) -> None:
        if self._listener is None:
            return
        user_id = channel.decode()[len(self._channel_prefix) :]
        self._listener(user_id, decode_item(user_id, data))
