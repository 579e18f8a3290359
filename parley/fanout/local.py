"""In-process fan-out: the embedded default, for a single server node."""

from __future__ import annotations

from collections.abc import Callable

from parley.domain.messages import Event
from parley.ports import Listener


class LocalFanout:
    """Hands every published item straight to this node's listener."""

    def __init__(self) -> None:
        self._listener: Listener | None = None

    def listen(self, listener: Listener) -> None:
        self._listener = listener

    def on_resync(self, callback: Callable[[], None]) -> None:
        """Hints are never lost in one process: nothing to resynchronise."""

    async def subscribe_user(self, user_id: str) -> None:
        """Every user's hints are already here."""

    async def unsubscribe_user(self, user_id: str) -> None:
        """Nothing to undo."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._listener = None

    async def publish(self, user_ids: list[str], item: Event | bytes) -> None:
        if self._listener is None:
            return
        for user_id in user_ids:
            self._listener(user_id, item)

    async def publish_events(self, events: list[Event]) -> None:
        if self._listener is None:
            return
        for event in events:
            self._listener(event.user_id, event)

    def healthy(self) -> bool:
        return True
