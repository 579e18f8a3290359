"""The ports of a node: what storage of images, fan-out and presence must do.

Each has an embedded adapter for one machine and one on an existing engine
for many (see ``parley.server.app.build_adapters``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from parley.domain.messages import Event

# What a node does with a fan-out item: an event of a user's log, or an
# ephemeral frame (presence) that is not kept.
Listener = Callable[[str, Event | bytes], None]


class Fanout(Protocol):
    """Tells the nodes that hold a user's devices that there is news."""

    def listen(self, listener: Listener) -> None: ...

    def on_resync(self, callback: Callable[[], None]) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def subscribe_user(self, user_id: str) -> None: ...

    async def unsubscribe_user(self, user_id: str) -> None: ...

    async def publish(self, user_ids: list[str], item: Event | bytes) -> None: ...

    async def publish_events(self, events: list[Event]) -> None: ...

    def healthy(self) -> bool: ...


class Presence(Protocol):
    """Which users hold a live connection on any node."""

    def on_expired(self, callback: Callable[[str], Awaitable[None]]) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def connected(self, user_id: str, connection_id: str) -> bool: ...

    async def disconnected(self, user_id: str, connection_id: str) -> bool: ...

    async def is_online(self, user_id: str) -> bool: ...


class MediaStore(Protocol):
    """Image bytes by content key; a put is durable when it returns."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def put(self, key: str, content: bytes) -> None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def exists(self, key: str) -> bool: ...

    async def check(self) -> None: ...
