"""Web Push: notifications to browsers (RFC 8030), signed with VAPID (RFC 8292).

The payload is encrypted for the browser's subscription keys with aes128gcm
(RFC 8291), so the push service never reads it. Each browser's endpoint names
its own push service, so there is no base URL to configure; endpoints must be
https.

The crypto is Mozilla's web-push libraries: ``http_ece`` encrypts and
``py_vapid`` signs the VAPID token. pywebpush, which joins them, posts with
blocking ``requests``, so the POST itself is made here with httpx.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import http_ece
import httpx
import orjson
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from py_vapid import Vapid, VapidException

from parley.push import Notification, Outcome, PushAddress, PushResult
from parley.push.outcomes import (
    gone,
    logged,
    rejected,
    retry_after_s,
    started,
    unreachable,
)

# RFC 8291 section 4: a push service takes at least 4096 bytes of body, which
# is the plaintext plus a 86-byte header, a 16-byte tag and 1 delimiter byte.
MAX_PLAINTEXT_BYTES = 4096 - 86 - 16 - 1
MAX_TOPIC_CHARS = 32
# RFC 8292 section 2: a VAPID token expires at most 24 hours after it is made.
VAPID_EXPIRY_S = 12 * 3600
VAPID_RENEW_S = 3600

_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")
_RETRY_STATUSES = {429}


class WebPushService:
    """Sends notifications to browsers, as one application server."""

    name = "webpush"

    def __init__(
        self,
        *,
        vapid_private_key: str,
        subject: str,
        verify: ssl.SSLContext | bool = True,
        ttl_s: int = 24 * 3600,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._vapid = _load_vapid(vapid_private_key)
        self._subject = _checked_subject(self._vapid, subject)
        self._verify = verify
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        # One VAPID header per push service origin, with when it was made.
        self._vapid_headers: dict[str, tuple[str, float]] = {}

    @property
    def application_server_key(self) -> str:
        """The public key browsers subscribe with (base64url, uncompressed)."""
        raw = self._vapid.public_key.public_bytes(
            Encoding.X962, PublicFormat.UncompressedPoint
        )
        return _b64url(raw)

    async def start(self) -> None:
        self._client = httpx.AsyncClient(verify=self._verify, timeout=self._timeout_s)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(
        self, address: PushAddress, notification: Notification
    ) -> PushResult:
        client = started(self._client)

        origin = _origin(address.token)
        if origin is None:
            return logged(self.name, address, gone("InvalidEndpoint"))

        plaintext = _plaintext(notification)
        if len(plaintext) > MAX_PLAINTEXT_BYTES:
            return logged(self.name, address, rejected("PayloadTooLarge"))

        body = _encrypt(plaintext, address)
        if body is None:
            return logged(self.name, address, gone("InvalidSubscriptionKeys"))

        try:
            response = await client.post(
                address.token,
                content=body,
                headers=self._headers(origin, notification),
            )
        except httpx.InvalidURL:
            return logged(self.name, address, gone("InvalidEndpoint"))
        except httpx.RequestError as error:
            return logged(self.name, address, unreachable(error))

        return logged(self.name, address, self._result(response))

    def _headers(self, origin: str, notification: Notification) -> dict[str, str]:
        return {
            "authorization": self._vapid_header(origin),
            "ttl": str(self._ttl_s),
            "urgency": "normal" if notification.withdraw else "high",
            "topic": topic(notification.collapse_key),
            "content-encoding": "aes128gcm",
            "content-type": "application/octet-stream",
        }

    def _vapid_header(self, origin: str) -> str:
        """The VAPID header for one push service, made again once an hour."""
        now_s = self._clock()
        header, made_s = self._vapid_headers.get(origin, ("", 0.0))
        if header and now_s - made_s < VAPID_RENEW_S:
            return header

        claims = {
            "aud": origin,
            "exp": int(now_s + VAPID_EXPIRY_S),
            "sub": self._subject,
        }
        header = self._vapid.sign(claims)["Authorization"]
        self._vapid_headers[origin] = (header, now_s)
        return header

    def _result(self, response: httpx.Response) -> PushResult:
        status = response.status_code
        if 200 <= status < 300:
            return PushResult(Outcome.DELIVERED, status, "")

        reason = _reason(response)
        if status in (404, 410):
            return PushResult(Outcome.GONE, status, reason)

        if status in _RETRY_STATUSES or status >= 500:
            delay_s = retry_after_s(response.headers.get("retry-after"), self._clock())
            return PushResult(Outcome.RETRY, status, reason, delay_s)

        return PushResult(Outcome.REJECTED, status, reason)


def topic(collapse_key: str) -> str:
    """The Topic header: the key itself, or a digest when it does not fit."""
    if _TOPIC.fullmatch(collapse_key):
        return collapse_key
    digest = hashlib.sha256(collapse_key.encode()).digest()
    return _b64url(digest)[:MAX_TOPIC_CHARS]


def _plaintext(notification: Notification) -> bytes:
    """The JSON that the service worker receives, once decrypted."""
    if notification.withdraw:
        message: dict[str, Any] = {"withdraw": notification.collapse_key}
    else:
        message = {
            "title": notification.shown_title,
            "body": notification.shown_body,
            "tag": notification.collapse_key,
        }

    message["unread_count"] = notification.unread_count
    message["data"] = notification.data
    return orjson.dumps(message)


def _encrypt(plaintext: bytes, address: PushAddress) -> bytes | None:
    """The aes128gcm body for the subscription's keys, or None if they are bad."""
    try:
        browser_key = _b64url_decode(address.p256dh or "")
        auth_secret = _b64url_decode(address.auth or "")
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), browser_key)
    except (ValueError, binascii.Error):
        return None
    if len(auth_secret) != 16:
        return None

    # A new key pair for each message, as RFC 8291 section 3.1 requires.
    sender_key = ec.generate_private_key(ec.SECP256R1())
    return http_ece.encrypt(
        plaintext,
        private_key=sender_key,
        dh=browser_key,
        auth_secret=auth_secret,
        version="aes128gcm",
    )


def _origin(endpoint: str) -> str | None:
    """The push service's origin, the VAPID audience; None unless https."""
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme != "https" or not parts.hostname:
        return None

    # py_vapid signs for host names and IPv4 only; push services use names.
    if ":" in parts.hostname:
        return None
    return f"https://{parts.hostname}" + ("" if port in (None, 443) else f":{port}")


def _reason(response: httpx.Response) -> str:
    """A push service's error word, from the JSON body many of them send."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    return response.reason_phrase


def _load_vapid(private_key: str) -> Vapid:
    """The VAPID key from PEM, or from base64url of the raw key or its DER."""
    if "-----BEGIN" in private_key:
        return Vapid.from_pem(private_key.strip().encode())
    return Vapid.from_string(private_key.strip())


def _checked_subject(vapid: Vapid, subject: str) -> str:
    """The contact push services may write to, refused now rather than per send."""
    try:
        vapid.sign({"aud": "https://push.invalid", "sub": subject})
    except VapidException as error:
        raise ValueError(f"{subject!r} is not a mailto: or https: contact.") from error
    return subject


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
