"""When a device is pushed a notification, and what the notification says."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from parley.errors import BadRequest
from parley.push import PushAddress

# Retries back off from one second to five minutes; after this many attempts
# a notification is dropped (the device catches up when it next connects).
MAX_PUSH_ATTEMPTS = 10
_BACKOFF_BASE_S = 1.0
_BACKOFF_CAP_S = 300.0


class PushKind(StrEnum):
    NOTIFY = "notify"
    WITHDRAW = "withdraw"


class Decision(StrEnum):
    SEND = "send"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class PushJob:
    """A notification owed to one device for one chat, with what decides it."""

    user_id: str
    device_id: str
    chat_id: int
    kind: PushKind
    seq: int
    queued_at_ms: int
    attempts: int
    service: str
    token: str
    p256dh: str | None
    auth: str | None
    chat_title: str | None
    sender_id: str | None
    text: str | None
    read_seq: int
    visible_last: int
    active: bool
    muted: bool

    @property
    def unread_count(self) -> int:
        return max(0, self.visible_last - self.read_seq)


def decide(job: PushJob, device_live: bool) -> tuple[Decision, str]:
    """Send, or drop with the reason, at the moment the push would go out."""
    if job.kind is PushKind.WITHDRAW:
        return Decision.SEND, "withdraw"
    if device_live:
        return Decision.DROP, "device_live"
    if not job.active or job.muted:
        return Decision.DROP, "muted_or_left"
    if job.read_seq >= job.seq:
        return Decision.DROP, "already_read"
    return Decision.SEND, "unread"


def backoff_s(attempts: int, retry_after_s: float | None) -> float:
    """How long to wait before the next attempt; the service's word wins."""
    if retry_after_s is not None:
        return min(max(retry_after_s, _BACKOFF_BASE_S), _BACKOFF_CAP_S)
    return min(_BACKOFF_BASE_S * 2 ** max(0, attempts - 1), _BACKOFF_CAP_S)


def collapse_key(chat_id: int) -> str:
    """One notification per chat: a newer one replaces the older on the device."""
    return f"chat-{chat_id}"


SERVICES = ("apns", "fcm", "webpush")

# Where browsers' push services live. A Web Push endpoint is a URL the client
# chooses and the server then posts to, so only known services are accepted.
DEFAULT_WEBPUSH_HOSTS = (
    "fcm.googleapis.com",
    "updates.push.services.mozilla.com",
    "push.services.mozilla.com",
    "web.push.apple.com",
    "notify.windows.com",
)

_APNS_TOKEN = re.compile(r"[0-9a-fA-F]{64,200}")
_FCM_TOKEN = re.compile(r"[A-Za-z0-9_:\-]{1,4096}")
_WEBPUSH_KEY = re.compile(r"[A-Za-z0-9_\-]{16,128}={0,2}")
_NOT_URL = re.compile(r"[\x00-\x20\x7f-\x9f\\]")


def check_push_address(
    service: object,
    token: object,
    p256dh: object,
    auth: object,
    *,
    allowed_hosts: tuple[str, ...],
) -> PushAddress:
    """A push address from a client, checked; raises BadRequest."""
    if service not in SERVICES:
        raise BadRequest("invalid_push_address", "Service is apns, fcm or webpush.")
    if not isinstance(token, str):
        raise BadRequest("invalid_push_address", "Field 'token' must be a string.")

    if service == "apns" and _APNS_TOKEN.fullmatch(token):
        return PushAddress("apns", token.lower())
    if service == "fcm" and _FCM_TOKEN.fullmatch(token):
        return PushAddress("fcm", token)
    if service == "webpush":
        _check_endpoint(token, allowed_hosts)
        for key in (p256dh, auth):
            if not isinstance(key, str) or not _WEBPUSH_KEY.fullmatch(key):
                raise BadRequest(
                    "invalid_push_address",
                    "A Web Push subscription needs its p256dh and auth keys "
                    "(base64url).",
                )
        return PushAddress("webpush", token, p256dh, auth)
    raise BadRequest("invalid_push_address", f"That is not a valid {service} token.")


def _check_endpoint(endpoint: str, allowed_hosts: tuple[str, ...]) -> None:
    # urlsplit drops tabs and newlines silently; the URL posted to would not.
    if _NOT_URL.search(endpoint):
        raise BadRequest(
            "invalid_push_address", "A Web Push endpoint holds no spaces or controls."
        )
    parts = urlsplit(endpoint)
    if parts.username is not None or parts.password is not None:
        raise BadRequest(
            "invalid_push_address", "A Web Push endpoint carries no user or password."
        )
    host = parts.hostname or ""
    known = any(
        host == allowed or host.endswith("." + allowed) for allowed in allowed_hosts
    )
    if parts.scheme != "https" or not known or len(endpoint) > 2048:
        raise BadRequest(
            "invalid_push_address",
            "A Web Push endpoint must be an https URL of a known push service.",
        )
