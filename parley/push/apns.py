"""APNs: notifications to Apple devices through Apple's provider API (HTTP/2).

One POST per notification to ``/3/device/<token>``, authenticated by a provider
token: a JWT signed ES256 with the team's ``.p8`` key, reused for 50 minutes
since Apple refuses tokens older than an hour and renewals more often than
every 20 minutes.

Built on httpx with HTTP/2 (the ``h2`` library) and on PyJWT with
``cryptography`` for the token. The asyncio library made for APNs (aioapns)
fixes Apple's hosts and its own TLS setup, so it could not be pointed at a
test service; the provider API itself is one request and needs no more.
"""

from __future__ import annotations

import hashlib
import re
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from parley.push import Notification, Outcome, PushAddress, PushResult
from parley.push.outcomes import (
    gone,
    logged,
    rejected,
    retry_after_s,
    started,
    unreachable,
)

APNS_PRODUCTION_URL = "https://api.push.apple.com"
APNS_SANDBOX_URL = "https://api.sandbox.push.apple.com"
PROVIDER_TOKEN_RENEW_S = 50 * 60
MAX_PAYLOAD_BYTES = 4096
MAX_COLLAPSE_ID_BYTES = 64

_DEVICE_TOKEN = re.compile(r"[0-9A-Fa-f]{16,200}")
_GONE_REASONS = {"BadDeviceToken", "Unregistered"}
_RETRY_STATUSES = {429, 500, 503}


class ApnsService:
    """Sends notifications to the devices of one app, as one Apple team."""

    name = "apns"

    def __init__(
        self,
        *,
        key_path: Path | str,
        key_id: str,
        team_id: str,
        bundle_id: str,
        base_url: str = APNS_PRODUCTION_URL,
        verify: ssl.SSLContext | bool = True,
        ttl_s: int = 24 * 3600,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = _load_signing_key(Path(key_path))
        self._key_id = key_id
        self._team_id = team_id
        self._bundle_id = bundle_id
        self._base_url = base_url
        self._verify = verify
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        self._provider_token: str | None = None
        self._provider_token_minted_s = 0.0

    async def start(self) -> None:
        # APNs speaks HTTP/2 only: offer nothing else when connecting.
        self._client = httpx.AsyncClient(
            base_url=self._base_url,
            http1=False,
            http2=True,
            verify=self._verify,
            timeout=self._timeout_s,
        )

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(
        self, address: PushAddress, notification: Notification
    ) -> PushResult:
        client = started(self._client)

        # A token that is not hex would also change the path it is put in.
        if not _DEVICE_TOKEN.fullmatch(address.token):
            return logged(self.name, address, gone("BadDeviceToken"))

        payload = _payload(notification)
        if len(payload) > MAX_PAYLOAD_BYTES:
            return logged(self.name, address, rejected("PayloadTooLarge"))

        try:
            response = await client.post(
                f"/3/device/{address.token}",
                content=payload,
                headers=self._headers(notification),
            )
        except httpx.RequestError as error:
            return logged(self.name, address, unreachable(error))

        return logged(self.name, address, self._result(response))

    def _headers(self, notification: Notification) -> dict[str, str]:
        # A withdraw wakes the app silently, so Apple wants the low priority.
        push_type, priority = "alert", "10"
        if notification.withdraw:
            push_type, priority = "background", "5"

        return {
            "authorization": f"bearer {self._bearer()}",
            "apns-topic": self._bundle_id,
            "apns-push-type": push_type,
            "apns-priority": priority,
            "apns-collapse-id": collapse_id(notification.collapse_key),
            "apns-expiration": str(int(self._clock() + self._ttl_s)),
            "content-type": "application/json",
        }

    def _bearer(self) -> str:
        """The provider token, minted again only when it is 50 minutes old."""
        now_s = self._clock()
        age_s = now_s - self._provider_token_minted_s
        if self._provider_token is None or age_s >= PROVIDER_TOKEN_RENEW_S:
            self._provider_token = jwt.encode(
                {"iss": self._team_id, "iat": int(now_s)},
                self._key,
                algorithm="ES256",
                headers={"kid": self._key_id},
            )
            self._provider_token_minted_s = now_s
        return self._provider_token

    def _result(self, response: httpx.Response) -> PushResult:
        status = response.status_code
        if status == 200:
            return PushResult(Outcome.DELIVERED, status, "")

        reason = _reason(response)
        if status == 410 or (status == 400 and reason in _GONE_REASONS):
            return PushResult(Outcome.GONE, status, reason)

        # Apple found the token stale before Parley did: mint one for the retry.
        if status == 403 and reason == "ExpiredProviderToken":
            self._provider_token = None
            return PushResult(Outcome.RETRY, status, reason)

        if status in _RETRY_STATUSES:
            delay_s = retry_after_s(response.headers.get("retry-after"), self._clock())
            return PushResult(Outcome.RETRY, status, reason, delay_s)

        return PushResult(Outcome.REJECTED, status, reason)


def _payload(notification: Notification) -> bytes:
    """The JSON the device receives: an alert, or a silent withdraw."""
    if notification.withdraw:
        # A background push carries content-available alone in ``aps``.
        aps: dict[str, object] = {"content-available": 1}
        extra: dict[str, object] = {
            "withdraw": notification.collapse_key,
            "unread_count": notification.unread_count,
        }
    else:
        aps = {
            "alert": {
                "title": notification.shown_title,
                "body": notification.shown_body,
            },
            "badge": notification.unread_count,
            "thread-id": notification.collapse_key,
            "sound": "default",
        }
        extra = {}

    return orjson.dumps({**notification.data, **extra, "aps": aps})


def collapse_id(collapse_key: str) -> str:
    """The key itself, or its digest when longer than Apple's 64 bytes."""
    if len(collapse_key.encode()) <= MAX_COLLAPSE_ID_BYTES:
        return collapse_key
    return hashlib.sha256(collapse_key.encode()).hexdigest()


def _reason(response: httpx.Response) -> str:
    """Apple's reason code from an error body, or the status phrase."""
    try:
        reason = response.json().get("reason")
    except (ValueError, AttributeError):
        reason = None
    return reason if isinstance(reason, str) else response.reason_phrase


def _load_signing_key(key_path: Path) -> ec.EllipticCurvePrivateKey:
    key = load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path} is not an APNs (P-256) signing key.")
    return key
