"""Presence in Redis with expiry, shared by every server node.

Each live connection is an entry in its user's sorted set, scored by the time
it expires; the node that holds the connection pushes that time forward every
``ttl_s / 3``. A user is online while any entry is unexpired. When a node dies
its entries expire, and whichever node sweeps first takes the user offline and
tells their contacts, so a dead node's users go offline within ``ttl_s`` plus
one sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

# KEYS: user set, expiry index. ARGV: entry, expiry, now, index entry, and
# how long the set itself is kept: longer than its entries, so that a sweep
# finds an expired entry there and tells the user's contacts.
# Returns 1 when the user had no live entry before this one.
_CONNECT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local before = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
if before == 0 then return 1 else return 0 end
"""

# KEYS: user set, expiry index. ARGV: entry, now, index entry.
# Returns 1 when the removal (by this caller) left the user with no live entry.
_DISCONNECT = """
redis.call('ZREM', KEYS[2], ARGV[3])
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if removed == 1 and redis.call('ZCARD', KEYS[1]) == 0 then return 1 else return 0 end
"""

# KEYS: user set, expiry index. ARGV: entry, new expiry, index entry, and
# how long the set itself is kept.
_REFRESH = """
if redis.call('ZADD', KEYS[1], 'XX', 'CH', ARGV[2], ARGV[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('ZADD', KEYS[2], 'XX', ARGV[2], ARGV[3])
end
"""


# A user's set outlives its newest entry by this many TTLs, for the sweep.
_SET_KEPT_TTLS = 3


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class RedisPresence:
    """Connections per user in Redis; online while any has not expired."""

    def __init__(
        self, url: str, node_id: str, ttl_s: float, prefix: str = "parley:"
    ) -> None:
        self._redis = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._user_key = f"{prefix}presence:"
        self._expiry_key = f"{prefix}presence-expiry"
        self._node_id = node_id
        self._ttl_ms = int(ttl_s * 1000)
        self._local: dict[str, str] = {}
        self._on_expired: Callable[[str], Awaitable[None]] | None = None
        self._task: asyncio.Task | None = None
        self._connect = self._redis.register_script(_CONNECT)
        self._disconnect = self._redis.register_script(_DISCONNECT)
        self._refresh = self._redis.register_script(_REFRESH)

    def on_expired(self, callback: Callable[[str], Awaitable[None]]) -> None:
        """Called with a user whose last connection expired on a dead node."""
        self._on_expired = callback

    async def start(self) -> None:
        self._task = asyncio.create_task(self._maintain_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._redis.aclose()

    def healthy(self) -> bool:
        return True

    def _entry(self, connection_id: str) -> str:
        return f"{self._node_id}/{connection_id}"

    async def connected(self, user_id: str, connection_id: str) -> bool:
        entry = self._entry(connection_id)
        self._local[entry] = user_id
        now = _now_ms()
        try:
            came_online = await self._connect(
                keys=[self._user_key + user_id, self._expiry_key],
                args=[
                    entry,
                    now + self._ttl_ms,
                    now,
                    f"{user_id}\n{entry}",
                    self._ttl_ms * _SET_KEPT_TTLS,
                ],
            )
        except (RedisError, OSError) as error:
            log.warning("presence not recorded, redis unavailable", error=str(error))
            return False
        return bool(came_online)

    async def disconnected(self, user_id: str, connection_id: str) -> bool:
        entry = self._entry(connection_id)
        self._local.pop(entry, None)
        try:
            went_offline = await self._disconnect(
                keys=[self._user_key + user_id, self._expiry_key],
                args=[entry, _now_ms(), f"{user_id}\n{entry}"],
            )
        except (RedisError, OSError) as error:
            log.warning("presence not cleared, redis unavailable", error=str(error))
            return False
        return bool(went_offline)

    async def is_online(self, user_id: str) -> bool:
        try:
            live = await self._redis.zcount(self._user_key + user_id, _now_ms(), "+inf")
        except (RedisError, OSError) as error:
            log.warning("presence unknown, redis unavailable", error=str(error))
            return False
        return live > 0

    async def live_devices(self, user_id: str) -> set[str]:
        """Devices with an unexpired entry (entries are node/device/unique)."""
        try:
            entries = await self._redis.zrangebyscore(
                self._user_key + user_id, _now_ms(), "+inf"
            )
        except (RedisError, OSError) as error:
            log.warning("presence unknown, redis unavailable", error=str(error))
            return set()
        return {entry.decode().split("/")[1] for entry in entries}

    async def _maintain_forever(self) -> None:
        interval_s = self._ttl_ms / 3000
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self._refresh_local()
                await self._sweep_expired()
            except (RedisError, OSError) as error:
                log.warning(
                    "presence upkeep skipped, redis unavailable", error=str(error)
                )

    async def _refresh_local(self) -> None:
        expiry = _now_ms() + self._ttl_ms
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry, user_id in list(self._local.items()):
                await self._refresh(
                    keys=[self._user_key + user_id, self._expiry_key],
                    args=[
                        entry,
                        expiry,
                        f"{user_id}\n{entry}",
                        self._ttl_ms * _SET_KEPT_TTLS,
                    ],
                    client=pipe,
                )
            await pipe.execute()

    async def _sweep_expired(self) -> None:
        now = _now_ms()
        expired = await self._redis.zrangebyscore(self._expiry_key, "-inf", now, 0, 100)
        for raw in expired:
            user_id, entry = raw.decode().split("\n", 1)
            went_offline = await self._disconnect(
                keys=[self._user_key + user_id, self._expiry_key],
                args=[entry, now, raw],
            )
            if went_offline and self._on_expired is not None:
                log.info("presence expired", user_id=user_id, entry=entry)
                await self._on_expired(user_id)
