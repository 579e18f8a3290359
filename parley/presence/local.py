"""In-process presence: the embedded default, for a single server node."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable


class LocalPresence:
    """Live connections per user; online while any is open."""

    def __init__(self) -> None:
        self._connections: defaultdict[str, set[str]] = defaultdict(set)

    def on_expired(self, callback: Callable[[str], Awaitable[None]]) -> None:
        """Connections of one process never outlive it: nothing expires."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def connected(self, user_id: str, connection_id: str) -> bool:
        """Record a connection; True when the user has just come online."""
        connections = self._connections[user_id]
        connections.add(connection_id)
        return len(connections) == 1

    async def disconnected(self, user_id: str, connection_id: str) -> bool:
        """Forget a connection; True when the user has just gone offline."""
        connections = self._connections.get(user_id)
        if connections is None or connection_id not in connections:
            return False
        connections.discard(connection_id)
        if connections:
            return False
        del self._connections[user_id]
        return True

    async def is_online(self, user_id: str) -> bool:
        return bool(self._connections.get(user_id))

    async def live_devices(self, user_id: str) -> set[str]:
        """Devices of the user with a live connection (ids are device/unique)."""
        connections = self._connections.get(user_id, ())
        return {connection_id.split("/", 1)[0] for connection_id in connections}

    def healthy(self) -> bool:
        return True
