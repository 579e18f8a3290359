"""In-process presence: the embedded default, for a single server node."""

from __future__ import annotations

from collections import defaultdict


class LocalPresence:
    """Counts live connections per user; online while any is open."""

    def __init__(self) -> None:
        self._connections: defaultdict[str, int] = defaultdict(int)

    async def connected(self, user_id: str, device_id: str) -> bool:
        """Record a connection; True when the user has just come online."""
        self._connections[user_id] += 1
        return self._connections[user_id] == 1

    async def disconnected(self, user_id: str, device_id: str) -> bool:
        """Forget a connection; True when the user has just gone offline."""
        remaining = self._connections[user_id] - 1
        if remaining > 0:
            self._connections[user_id] = remaining
            return False
        self._connections.pop(user_id, None)
        return True

    async def is_online(self, user_id: str) -> bool:
        return self._connections.get(user_id, 0) > 0

    def healthy(self) -> bool:
        return True
