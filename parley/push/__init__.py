"""Push: waking phones and browsers that have no live connection."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Protocol

# How much of a message a notification shows. A phone shows a few lines, and
# each service caps its payload at 4 KiB, so the text is cut well before that.
PREVIEW_LIMIT_CHARS = 400
TITLE_LIMIT_CHARS = 100


@dataclass(frozen=True, slots=True)
class PushAddress:
    """Where one device or browser is reached through one push service."""

    service: str  # "apns" | "fcm" | "webpush"
    token: str  # APNs device token (hex) | FCM registration token | endpoint URL
    p256dh: str | None = None  # Web Push subscription keys (base64url)
    auth: str | None = None

    @property
    def fingerprint(self) -> str:
        """A short name for the device in logs, which never show the token."""
        return hashlib.sha256(self.token.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Notification:
    """What the device shows, or takes away when ``withdraw`` is set."""

    collapse_key: str  # a newer notification with this key replaces the older
    title: str
    body: str | None  # None when the setting hides message text
    unread_count: int
    data: dict[str, str]  # small, for the app: chat_id, seq, kind
    withdraw: bool = False  # remove the collapsed notification: a silent push

    @property
    def shown_title(self) -> str:
        return _cut(self.title, TITLE_LIMIT_CHARS)

    @property
    def shown_body(self) -> str:
        """The message text cut to a preview, or a count when text is hidden."""
        if self.body is not None:
            return _cut(self.body, PREVIEW_LIMIT_CHARS)

        if self.unread_count == 1:
            return "1 new message"
        return f"{self.unread_count} new messages"


class Outcome(enum.Enum):
    """What the caller does next with an address and a notification."""

    DELIVERED = "delivered"  # the service took it
    GONE = "gone"  # the address will never work again: delete it
    RETRY = "retry"  # transient: try again, after retry_after_s if given
    REJECTED = "rejected"  # permanent for this notification: drop it


@dataclass(frozen=True, slots=True)
class PushResult:
    """The outcome of one send, with the service's own answer."""

    outcome: Outcome
    status: int | None  # the HTTP status, None when no answer came
    reason: str  # the service's reason code, or Parley's when none came
    retry_after_s: float | None = None


class PushService(Protocol):
    """A sender for one push service; ``send`` maps every failure to a result."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(
        self, address: PushAddress, notification: Notification
    ) -> PushResult: ...


def _cut(text: str, limit_chars: int) -> str:
    if len(text) <= limit_chars:
        return text
    return text[: limit_chars - 1] + "…"
