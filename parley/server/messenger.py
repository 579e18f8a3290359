"""The messenger's handler: checks a request, stores it, then notifies.

HTTP routes and the WebSocket gateway both call this one place, so a message
sent either way obeys the same rules and reaches devices the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from parley import metrics
from parley.auth import Identity
from parley.config import Settings
from parley.domain import reads
from parley.domain.chats import check_title, check_user_id
from parley.domain.messages import (
    Event,
    EventKind,
    Message,
    check_client_id,
    check_media_ids,
    check_not_empty,
    encode,
    iso_time,
)
from parley.domain.push import check_push_address
from parley.domain.text import normalize_text
from parley.errors import BadRequest, NotFound, Unavailable
from parley.media.images import process_image
from parley.ports import Fanout, MediaStore, Presence
from parley.storage.sql import ChatView, MediaRecord, SqlStore

log = structlog.get_logger(__name__)

# Image decoding holds whole bitmaps in memory (up to a few hundred MB for
# the largest image allowed): one at a time per node.
_IMAGE_WORKERS = 1

_EVENT_KINDS = (EventKind.MESSAGE, EventKind.READ, EventKind.RECEIPT, EventKind.MEMBER)
# One child per kind, looked up once rather than per send.
_APPENDED = {kind: metrics.EVENTS_APPENDED.labels(kind) for kind in _EVENT_KINDS}


@dataclass(frozen=True, slots=True)
class ReadPosition:
    chat_id: int
    read_seq: int
    unread_count: int

    def to_dict(self) -> dict:
        return {
            "chat_id": self.chat_id,
            "read_seq": self.read_seq,
            "unread_count": self.unread_count,
        }


class Messenger:
    def __init__(
        self,
        settings: Settings,
        store: SqlStore,
        media_store: MediaStore,
        fanout: Fanout,
        presence: Presence,
        clock: Callable[[], int],
    ) -> None:
        self.settings = settings
        self.store = store
        self.media_store = media_store
        self.fanout = fanout
        self.presence = presence
        self.clock = clock
        self._image_slots = asyncio.Semaphore(_IMAGE_WORKERS)
        self.on_pushes_due: Callable[[], None] = lambda: None
        presence.on_expired(self.presence_expired)

    async def _notify(self, events: list[Event]) -> None:
        counts = dict.fromkeys(_EVENT_KINDS, 0)
        for event in events:
            counts[event.kind] += 1
        for kind, count in counts.items():
            if count:
                _APPENDED[kind].inc(count)
        await self.fanout.publish_events(events)

    # -- chats ------------------------------------------------------------

    async def open_private_chat(self, me: Identity, other_id: object) -> ChatView:
        view, events = await self.store.open_private_chat(
            me.user_id, check_user_id(other_id)
        )
        await self._notify(events)
        return view

    async def create_group(
        self, me: Identity, title: object, member_ids: object
    ) -> ChatView:
        if not isinstance(member_ids, list):
            raise BadRequest(
                "invalid_field", "Field 'members' must be a list of user ids."
            )
        others = [check_user_id(member_id) for member_id in member_ids]
        view, events = await self.store.create_group(
            me.user_id, check_title(title), others
        )
        await self._notify(events)
        return view

    async def add_member(self, me: Identity, chat_id: int, user_id: object) -> ChatView:
        view, events = await self.store.add_member(
            me.user_id, chat_id, check_user_id(user_id)
        )
        await self._notify(events)
        return view

    async def remove_member(self, me: Identity, chat_id: int, user_id: str) -> None:
        events = await self.store.remove_member(
            me.user_id, chat_id, check_user_id(user_id)
        )
        await self._notify(events)

    async def chat(self, me: Identity, chat_id: int) -> ChatView:
        return await self.store.chat(me.user_id, chat_id)

    async def chats(self, me: Identity, limit: int, offset: int) -> list[ChatView]:
        return await self.store.chats(me.user_id, limit, offset)

    # -- messages ---------------------------------------------------------

    async def send(
        self,
        me: Identity,
        chat_id: int,
        client_id: object,
        text: object,
        images: object,
    ) -> tuple[Message, bool]:
        """Store a message and tell its chat; True when it is new."""
        client_id = check_client_id(client_id)
        text = normalize_text(text, limit=self.settings.max_text_characters)
        media_ids = check_media_ids(images, self.settings.max_images_per_message)
        check_not_empty(text, media_ids)

        message, created, events = await self.store.send(
            me.user_id, chat_id, client_id, text, media_ids
        )
        if created:
            metrics.MESSAGES_SENT.inc()
            await self._notify(events)
            self.on_pushes_due()
        return message, created

    async def history(
        self,
        me: Identity,
        chat_id: int,
        before: int | None,
        after: int | None,
        limit: int,
    ) -> list[Message]:
        return await self.store.history(
            me.user_id, chat_id, before=before, after=after, limit=limit
        )

    async def read(self, me: Identity, chat_id: int, seq: object) -> ReadPosition:
        member, last_seq, events = await self.store.read(me.user_id, chat_id, seq)
        await self._notify(events)
        self.on_pushes_due()
        return ReadPosition(
            chat_id, member.read_seq, reads.unread_count(member, last_seq)
        )

    async def receipts(self, me: Identity, chat_id: int, seq: int) -> dict:
        message, recipients = await self.store.receipts(me.user_id, chat_id, seq)
        return {"chat_id": chat_id, "seq": message.seq, "recipients": recipients}

    async def ack(self, me: Identity, cursor: int) -> None:
        events = await self.store.ack(me.user_id, me.device_id, cursor)
        await self._notify(events)

    # -- push -------------------------------------------------------------

    async def register_push(
        self, me: Identity, service: object, token: object, p256dh: object, auth: object
    ) -> None:
        """Where this device is reached while it has no live connection."""
        address = check_push_address(
            service,
            token,
            p256dh,
            auth,
            allowed_hosts=tuple(self.settings.webpush_allowed_hosts),
        )
        await self.store.set_push_address(me.user_id, me.device_id, address)
        log.info(
            "push address registered",
            user_id=me.user_id,
            device_id=me.device_id,
            service=address.service,
        )

    async def unregister_push(self, me: Identity) -> None:
        await self.store.set_push_address(me.user_id, me.device_id, None)

    async def mute(self, me: Identity, chat_id: int, muted: bool) -> None:
        await self.store.set_muted(me.user_id, chat_id, muted)

    # -- images -----------------------------------------------------------

    async def upload_image(self, me: Identity, data: bytes) -> MediaRecord:
        """Check, clean and store an image; it can then be attached to messages."""
        async with self._image_slots:
            image = await asyncio.to_thread(
                process_image,
                data,
                max_bytes=self.settings.max_image_bytes,
                max_pixels=self.settings.max_image_pixels,
            )

        media_id = hashlib.sha256(image.content).hexdigest()
        try:
            await self.media_store.put(media_id, image.content)
            await self.media_store.put(f"{media_id}.thumb", image.thumbnail)
        except OSError as error:
            log.error("media storage failed", media_id=media_id, error=str(error))
            raise Unavailable(
                "media_unavailable", "Image storage is unavailable; nothing was stored."
            ) from None
        record = MediaRecord(
            media_id=media_id,
            content_type=image.content_type,
            bytes=len(image.content),
            width=image.width,
            height=image.height,
            frames=image.frames,
            thumbnail_bytes=len(image.thumbnail),
        )
        await self.store.record_media(me.user_id, record)
        metrics.IMAGES_STORED.inc()
        log.info(
            "image stored", user_id=me.user_id, media_id=media_id, bytes=record.bytes
        )
        return record

    async def download(
        self, me: Identity, media_id: str, *, chat_id: int | None, thumbnail: bool
    ) -> tuple[bytes, str]:
        """An image for its uploader, or for a member who can see it in a chat."""
        record = await self.store.media_for(me.user_id, media_id, chat_id)
        if record is None:
            raise _media_not_found(media_id)

        key = f"{media_id}.thumb" if thumbnail else media_id
        content = await self.media_store.get(key)
        if content is None:
            log.error("image missing from media storage", media_id=media_id, key=key)
            raise _media_not_found(media_id)
        return content, "image/jpeg" if thumbnail else record.content_type

    # -- presence ---------------------------------------------------------

    async def device_connected(self, me: Identity, connection_id: str) -> int:
        """Record a live device; returns the cursor it last acknowledged."""
        acked = await self.store.connect_device(me.user_id, me.device_id)
        if await self.presence.connected(me.user_id, connection_id):
            await self._announce_presence(me.user_id, online=True, last_seen_ms=None)
        return acked

    async def device_disconnected(self, me: Identity, connection_id: str) -> None:
        if not await self.presence.disconnected(me.user_id, connection_id):
            return
        last_seen_ms = await self.store.record_last_seen(me.user_id, me.device_id)
        await self._announce_presence(
            me.user_id, online=False, last_seen_ms=last_seen_ms
        )

    async def presence_expired(self, user_id: str) -> None:
        """The last connection of a user was on a node that stopped answering."""
        last_seen_ms = await self.store.record_last_seen(user_id, None)
        await self._announce_presence(user_id, online=False, last_seen_ms=last_seen_ms)

    async def _announce_presence(
        self, user_id: str, *, online: bool, last_seen_ms: int | None
    ) -> None:
        contacts = await self.store.contacts(
            user_id, self.settings.presence_max_chat_members
        )
        frame = encode(
            {
                "type": "presence",
                "user_id": user_id,
                "online": online,
                "last_seen": iso_time(last_seen_ms),
            }
        )
        await self.fanout.publish(contacts, frame)

    async def presence_of(self, me: Identity, user_id: str) -> dict:
        """Presence of the caller or of someone who shares a chat with them."""
        user_id = check_user_id(user_id)
        if user_id != me.user_id and user_id not in await self.store.contacts(
            me.user_id
        ):
            raise NotFound(
                "user_not_found", f"No user {user_id} who shares a chat with you."
            )

        online = await self.presence.is_online(user_id)
        last_seen = None if online else iso_time(await self.store.last_seen(user_id))
        return {"user_id": user_id, "online": online, "last_seen": last_seen}


def _media_not_found(media_id: str) -> NotFound:
    return NotFound(
        "media_not_found", f"No image {media_id:.64} that you uploaded or can see."
    )
