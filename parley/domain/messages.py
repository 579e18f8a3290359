"""Messages, the events of a user's log, and how both are written on the wire."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import NamedTuple

import orjson

from parley.errors import BadRequest

# Matched whole (fullmatch): "$" would let a trailing newline through.
_CLIENT_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_MEDIA_ID = re.compile(r"[0-9a-f]{64}")


@lru_cache(maxsize=256)
def iso_time(ms: int | None) -> str | None:
    """A server time as ISO 8601 in UTC with its offset, to the millisecond.

    Cached: a message's time is written once for its sender's answer and
    once for its recipients, and messages of one millisecond share it.
    """
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds")


def check_client_id(client_id: object) -> str:
    if not isinstance(client_id, str) or not _CLIENT_ID.fullmatch(client_id):
        raise BadRequest(
            "invalid_client_id",
            "Field 'client_id' must be 1 to 64 letters, digits or _ . : -.",
        )
    return client_id


def check_media_ids(media_ids: object, limit: int) -> list[str]:
    if media_ids is None:
        return []
    if not isinstance(media_ids, list) or not all(
        isinstance(media_id, str) and _MEDIA_ID.fullmatch(media_id)
        for media_id in media_ids
    ):
        raise BadRequest("invalid_field", "Field 'images' must be a list of image ids.")
    if len(media_ids) > limit:
        raise BadRequest(
            "too_many_images",
            f"A message carries at most {limit} images; this one has {len(media_ids)}.",
        )
    if len(set(media_ids)) != len(media_ids):
        raise BadRequest("invalid_field", "The same image is listed twice.")
    return media_ids


def check_not_empty(text: str | None, media_ids: list[str]) -> None:
    if text is None and not media_ids:
        raise BadRequest("message_empty", "A message needs text, an image, or both.")


@dataclass(frozen=True, slots=True)
class Message:
    chat_id: int
    seq: int
    sender_id: str
    client_id: str
    text: str | None
    images: list[dict]
    sent_at_ms: int

    def to_dict(self) -> dict:
        return {
            "chat_id": self.chat_id,
            "seq": self.seq,
            "sender_id": self.sender_id,
            "client_id": self.client_id,
            "text": self.text,
            "images": self.images,
            "sent_at": iso_time(self.sent_at_ms),
        }

    def preview(self, length: int = 100) -> dict:
        return {
            "seq": self.seq,
            "sender_id": self.sender_id,
            "text": None if self.text is None else self.text[:length],
            "image_count": len(self.images),
            "sent_at": iso_time(self.sent_at_ms),
        }


class EventKind:
    """The kinds of event in a user's log; each is also a frame type."""

    MESSAGE = "message"
    READ = "read"
    RECEIPT = "receipt"
    MEMBER = "member"


class Event(NamedTuple):
    """One entry of a user's log: what a device at ``cursor - 1`` has not seen.

    ``body`` is the JSON object of the frame without its type and cursor; it
    is encoded once and shared by every recipient of the same fact.
    ``sent_at_ms`` is set on live message events, to measure delivery. A
    tuple, because a fan-out makes one per recipient.
    """

    user_id: str
    cursor: int
    kind: str
    body: bytes
    sent_at_ms: int | None = None

    def frame(self) -> bytes:
        head = b'{"type":"%s","cursor":%d' % (self.kind.encode(), self.cursor)
        if self.body == b"{}":
            return head + b"}"
        return head + b"," + self.body[1:]


def encode(value: object) -> bytes:
    return orjson.dumps(value)
