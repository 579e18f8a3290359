"""FCM: notifications to Android devices through Firebase's HTTP v1 API.

One POST per message to ``/v1/projects/<project>/messages:send``, with an OAuth
2.0 access token of the project's service account. google-auth mints that token
by the JWT-bearer grant (RFC 7523) at the ``token_uri`` that the account's JSON
names, and nowhere else: no metadata server, no default credentials. Its
refresh blocks, so it runs in a worker thread, one at a time, only when the
token is within minutes of expiring. The messages go through httpx.

firebase-admin is not used: it is built on blocking calls and fixes Google's
hosts, so it could neither share the event loop nor be pointed at a test
service.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import certifi
import google.auth.exceptions
import httpx
import orjson
import urllib3
from google.auth.credentials import TokenState
from google.auth.transport.urllib3 import Request as AuthRequest
from google.oauth2 import service_account

from parley.push import Notification, Outcome, PushAddress, PushResult
from parley.push.apns import collapse_id
from parley.push.outcomes import logged, retry_after_s, started, unreachable

FCM_URL = "https://fcm.googleapis.com"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"

_RETRY_STATUSES = {429, 500, 503}
_FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
# FCM answers INVALID_ARGUMENT both for a malformed token and for a malformed
# message; only the first means the address is useless.
_BAD_TOKEN_MESSAGE = "registration token is not a valid FCM registration token"


class FcmService:
    """Sends notifications to the devices of one Firebase project."""

    name = "fcm"

    def __init__(
        self,
        *,
        service_account_path: Path | str,
        base_url: str = FCM_URL,
        ttl_s: int = 24 * 3600,
        timeout_s: float = 10.0,
    ) -> None:
        info = json.loads(Path(service_account_path).read_text())
        self._project_id: str = info["project_id"]
        self._credentials = _credentials(info)
        self._token_transport = _token_transport(timeout_s)
        self._token_lock = asyncio.Lock()
        self._base_url = base_url
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            base_url=self._base_url, timeout=self._timeout_s
        )

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._token_transport.http.clear()

    async def send(
        self, address: PushAddress, notification: Notification
    ) -> PushResult:
        client = started(self._client)

        try:
            access_token = await self._access_token()
        except google.auth.exceptions.GoogleAuthError as error:
            return logged(self.name, address, _token_failure(error))

        message = _message(address.token, notification, self._ttl_s)
        try:
            response = await client.post(
                f"/v1/projects/{self._project_id}/messages:send",
                content=orjson.dumps({"message": message}),
                headers={
                    "authorization": f"Bearer {access_token}",
                    "content-type": "application/json; charset=utf-8",
                },
            )
        except httpx.RequestError as error:
            return logged(self.name, address, unreachable(error))

        return logged(self.name, address, self._result(response))

    async def _access_token(self) -> str:
        """The current access token, minted again only when close to expiry."""
        async with self._token_lock:
            if self._credentials.token_state is not TokenState.FRESH:
                await asyncio.to_thread(
                    self._credentials.refresh, self._token_transport
                )
            return self._credentials.token

    def _result(self, response: httpx.Response) -> PushResult:
        status = response.status_code
        if status == 200:
            return PushResult(Outcome.DELIVERED, status, "")

        error = _error(response)
        code = _error_code(error) or error.get("status") or response.reason_phrase
        if code == "UNREGISTERED" or (
            code == "INVALID_ARGUMENT" and _names_token(error)
        ):
            return PushResult(Outcome.GONE, status, code)

        # The access token was refused (revoked, or the clock is off): mint
        # another for the retry. FCM's own 401s carry an FcmError code instead.
        if status == 401 and _error_code(error) is None:
            self._credentials.token = None
            return PushResult(Outcome.RETRY, status, code)

        if status in _RETRY_STATUSES:
            delay_s = retry_after_s(response.headers.get("retry-after"))
            return PushResult(Outcome.RETRY, status, code, delay_s)

        return PushResult(Outcome.REJECTED, status, code)


def _credentials(info: dict[str, Any]) -> service_account.Credentials:
    """The service account, which mints tokens at its own ``token_uri`` only."""
    return service_account.Credentials.from_service_account_info(
        info,
        scopes=[FCM_SCOPE],
        # RFC 7523 names the token endpoint as the audience; google-auth
        # would name Google's endpoint whatever the account's JSON says.
        additional_claims={"aud": info["token_uri"]},
    )


def _token_transport(timeout_s: float) -> AuthRequest:
    """Blocking HTTP for google-auth, bounded in time and without retries."""
    return AuthRequest(
        urllib3.PoolManager(
            ca_certs=certifi.where(),
            timeout=urllib3.Timeout(total=timeout_s),
            retries=False,
        )
    )


def _message(token: str, notification: Notification, ttl_s: int) -> dict[str, Any]:
    """The v1 message: a notification with a count, or data alone to withdraw."""
    key = notification.collapse_key
    if notification.withdraw:
        return {
            "token": token,
            "data": {
                **notification.data,
                "withdraw": key,
                "unread_count": str(notification.unread_count),
            },
            "android": {"collapse_key": key, "priority": "normal", "ttl": f"{ttl_s}s"},
            "apns": {
                "headers": {
                    "apns-push-type": "background",
                    "apns-priority": "5",
                    "apns-collapse-id": collapse_id(key),
                },
                "payload": {"aps": {"content-available": 1}},
            },
        }

    return {
        "token": token,
        "notification": {
            "title": notification.shown_title,
            "body": notification.shown_body,
        },
        "data": dict(notification.data),
        "android": {
            "collapse_key": key,
            "priority": "high",
            "ttl": f"{ttl_s}s",
            "notification": {
                "tag": key,
                "notification_count": notification.unread_count,
            },
        },
        "apns": {
            "headers": {"apns-priority": "10", "apns-collapse-id": collapse_id(key)},
            "payload": {"aps": {"badge": notification.unread_count, "thread-id": key}},
        },
    }


def _error(response: httpx.Response) -> dict[str, Any]:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def _error_code(error: dict[str, Any]) -> str | None:
    """The FCM error code from the details of a v1 error, if it has one."""
    for detail in _details(error):
        if detail.get("@type") == _FCM_ERROR_TYPE and detail.get("errorCode"):
            return str(detail["errorCode"])
    return None


def _names_token(error: dict[str, Any]) -> bool:
    """Whether an INVALID_ARGUMENT is about the registration token."""
    for detail in _details(error):
        if detail.get("@type") != _BAD_REQUEST_TYPE:
            continue
        for violation in detail.get("fieldViolations") or []:
            if (
                isinstance(violation, dict)
                and violation.get("field") == "message.token"
            ):
                return True

    return _BAD_TOKEN_MESSAGE in str(error.get("message", ""))


def _details(error: dict[str, Any]) -> list[dict[str, Any]]:
    details = error.get("details")
    if not isinstance(details, list):
        return []
    return [detail for detail in details if isinstance(detail, dict)]


def _token_failure(error: google.auth.exceptions.GoogleAuthError) -> PushResult:
    """The result when no access token could be had for the send."""
    if isinstance(error, google.auth.exceptions.TransportError):
        return PushResult(Outcome.RETRY, None, "oauth_unreachable")
    if error.retryable:
        return PushResult(Outcome.RETRY, None, "oauth_unavailable")
    return PushResult(Outcome.REJECTED, None, "oauth_refused")
