"""Fake APNs, FCM and Web Push services on loopback, as strict as the real ones.

Each is a real server on 127.0.0.1 that checks the wire format a sender puts
on it, answers with the status and error body the real service would, and
records what it accepted so that a test can read what the device would show.
A test may queue failures (throttling, outages) with ``fail_next``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import socket
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import http_ece
import jwt
import trustme
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from parley.push import PushAddress

Clock = Callable[[], float]

# The accounts the tests' senders use, as the fakes know them.
TEAM_ID = "TEAM123456"
KEY_ID = "KEY7654321"
BUNDLE_ID = "org.parley.app"
PROJECT_ID = "parley-test"
CLIENT_EMAIL = "push@parley-test.iam.gserviceaccount.com"
VAPID_SUBJECT = "mailto:ops@parley.example"


class FakeClock:
    """Time that moves only when a test moves it, shared by sender and fake."""

    def __init__(self) -> None:
        self.now_s = time.time()

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


@dataclass(frozen=True)
class Failure:
    """An answer a fake gives to the next valid request instead of taking it."""

    status: int
    reason: str
    retry_after_s: int | None = None


class _Failures:
    def __init__(self) -> None:
        self._queue: list[Failure] = []

    def fail_next(
        self, status: int, reason: str, retry_after_s: int | None = None
    ) -> None:
        self._queue.append(Failure(status, reason, retry_after_s))

    def _next_failure(self) -> Failure | None:
        return self._queue.pop(0) if self._queue else None


def _retry_after(failure: Failure) -> dict[str, str]:
    if failure.retry_after_s is None:
        return {}
    return {"retry-after": str(failure.retry_after_s)}


def unused_port() -> int:
    """A loopback port that nothing listens on, for a service that is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_p8(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    """An APNs key as Apple's developer site gives it: PKCS#8 PEM, a .p8 file."""
    path.write_bytes(
        key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    return path


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ----------------------------------------------------------------------------
# APNs: HTTP/2 over TLS, provider tokens, Apple's reason codes.
# ----------------------------------------------------------------------------

APNS_MAX_PAYLOAD_BYTES = 4096
_APNS_PATH = re.compile(r"/3/device/([^/?]+)")
_APNS_TOKEN = re.compile(r"[0-9a-fA-F]{64}")
_APNS_PUSH_TYPES = {"alert", "background", "voip", "complication", "fileprovider"}


@dataclass
class ApnsRefusal(Exception):
    """An error answer of the fake APNs: a status and Apple's reason code."""

    status: int
    reason: str
    timestamp_ms: int | None = None  # when an unregistered token stopped working

    def body(self) -> bytes:
        answer: dict[str, Any] = {"reason": self.reason}
        if self.timestamp_ms is not None:
            answer["timestamp"] = self.timestamp_ms
        return json.dumps(answer).encode()


@dataclass(frozen=True)
class ApnsRequest:
    """A notification the fake APNs accepted, as the device will get it."""

    token: str
    headers: dict[str, str]
    body: bytes
    payload: dict[str, Any]
    provider_token: str


class FakeApns(_Failures):
    """Apple's provider API for one team and one app."""

    def __init__(
        self,
        *,
        team_id: str,
        key_id: str,
        public_key: ec.EllipticCurvePublicKey,
        bundle_id: str,
        ssl_context: ssl.SSLContext,
        clock: Clock = time.time,
    ) -> None:
        super().__init__()
        self.team_id = team_id
        self.key_id = key_id
        self.public_key = public_key
        self.bundle_id = bundle_id
        self.clock = clock
        self.received: list[ApnsRequest] = []
        self.refusals: list[ApnsRefusal] = []
        self.provider_tokens: list[str] = []
        self.http1_connections = 0
        self.unregistered: dict[str, int] = {}  # token -> when, in ms
        self._ssl_context = ssl_context
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()
        self._token_changed_s: float | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"https://127.0.0.1:{port}"

    def unregister(self, token: str) -> None:
        """From now on the device token answers 410 Unregistered."""
        self.unregistered[token] = int(self.clock() * 1000)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ApnsConnection(self), "127.0.0.1", 0, ssl=self._ssl_context
        )

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for transport in list(self._transports):
            transport.close()
        await self._server.wait_closed()

    def answer(
        self, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """The status, headers and body that APNs gives to one request."""
        try:
            token, fields = self._check_request(headers)
            provider_token = self._check_provider_token(fields.get("authorization"))
            self._check_headers(fields)
            payload = self._check_payload(fields["apns-push-type"], body)
            self._check_device(token)
        except ApnsRefusal as refusal:
            self.refusals.append(refusal)
            return refusal.status, {}, refusal.body()

        failure = self._next_failure()
        if failure is not None:
            refusal = ApnsRefusal(failure.status, failure.reason)
            self.refusals.append(refusal)
            return failure.status, _retry_after(failure), refusal.body()

        self.received.append(ApnsRequest(token, fields, body, payload, provider_token))
        return 200, {}, b""

    def _check_request(
        self, headers: list[tuple[str, str]]
    ) -> tuple[str, dict[str, str]]:
        names = [name for name, _ in headers]
        if len(names) != len(set(names)):
            raise ApnsRefusal(400, "DuplicateHeaders")
        fields = dict(headers)

        if fields.get(":method") != "POST":
            raise ApnsRefusal(405, "MethodNotAllowed")
        if fields.get(":scheme") != "https":
            raise ApnsRefusal(400, "BadPath")
        match = _APNS_PATH.fullmatch(fields.get(":path", ""))
        if match is None:
            raise ApnsRefusal(404, "BadPath")
        return match.group(1), fields

    def _check_provider_token(self, authorization: str | None) -> str:
        """The provider token, checked as Apple does: key, team and age."""
        if not authorization:
            raise ApnsRefusal(403, "MissingProviderToken")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApnsRefusal(403, "InvalidProviderToken")

        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=["ES256"],
                options={"verify_exp": False, "verify_iat": False},
            )
        except jwt.InvalidTokenError as error:
            raise ApnsRefusal(403, "InvalidProviderToken") from error
        if header.get("kid") != self.key_id or claims.get("iss") != self.team_id:
            raise ApnsRefusal(403, "InvalidProviderToken")

        issued_s = claims.get("iat")
        if not isinstance(issued_s, int) or issued_s > self.clock() + 60:
            raise ApnsRefusal(403, "InvalidProviderToken")
        if self.clock() - issued_s > 3600:
            raise ApnsRefusal(403, "ExpiredProviderToken")

        self._note_provider_token(token)
        return token

    def _note_provider_token(self, token: str) -> None:
        # Apple refuses a provider that changes its token more often than
        # every 20 minutes.
        if token in self.provider_tokens:
            return
        changed_s = self._token_changed_s
        if changed_s is not None and self.clock() - changed_s < 20 * 60:
            raise ApnsRefusal(429, "TooManyProviderTokenUpdates")
        self.provider_tokens.append(token)
        self._token_changed_s = self.clock()

    def _check_headers(self, fields: dict[str, str]) -> None:
        topic = fields.get("apns-topic")
        if topic is None:
            raise ApnsRefusal(400, "MissingTopic")
        if topic != self.bundle_id:
            raise ApnsRefusal(400, "TopicDisallowed")

        push_type = fields.get("apns-push-type")
        if push_type not in _APNS_PUSH_TYPES:
            raise ApnsRefusal(400, "InvalidPushType")

        # Background pushes must go at priority 5.
        priority = fields.get("apns-priority", "10")
        if priority not in {"1", "5", "10"}:
            raise ApnsRefusal(400, "BadPriority")
        if push_type == "background" and priority != "5":
            raise ApnsRefusal(400, "BadPriority")

        if not fields.get("apns-expiration", "0").isdigit():
            raise ApnsRefusal(400, "BadExpirationDate")
        if len(fields.get("apns-collapse-id", "").encode()) > 64:
            raise ApnsRefusal(400, "BadCollapseId")

    def _check_payload(self, push_type: str, body: bytes) -> dict[str, Any]:
        if not body:
            raise ApnsRefusal(400, "PayloadEmpty")
        if len(body) > APNS_MAX_PAYLOAD_BYTES:
            raise ApnsRefusal(413, "PayloadTooLarge")

        # Apple names no reason for a body that is not a JSON object with
        # ``aps``; "BadPayload" is this fake's own word for it.
        try:
            payload = json.loads(body)
        except ValueError as error:
            raise ApnsRefusal(400, "BadPayload") from error
        if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
            raise ApnsRefusal(400, "BadPayload")

        aps = payload["aps"]
        if push_type == "alert" and "alert" not in aps:
            raise ApnsRefusal(400, "BadPayload")
        if push_type == "background" and aps != {"content-available": 1}:
            raise ApnsRefusal(400, "BadPayload")
        return payload

    def _check_device(self, token: str) -> None:
        if not _APNS_TOKEN.fullmatch(token):
            raise ApnsRefusal(400, "BadDeviceToken")
        if token in self.unregistered:
            raise ApnsRefusal(410, "Unregistered", self.unregistered[token])


class _ApnsConnection(asyncio.Protocol):
    """One client connection to the fake APNs, spoken in HTTP/2 with ``h2``."""

    def __init__(self, fake: FakeApns) -> None:
        self._fake = fake
        self._h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self._streams: dict[int, tuple[list[tuple[str, str]], bytearray]] = {}
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

        # APNs speaks HTTP/2 only: a client that did not agree on h2 by ALPN
        # is cut off.
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
            self._fake.http1_connections += 1
            transport.close()
            return

        self._fake._transports.add(transport)
        self._h2.initiate_connection()
        transport.write(self._h2.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        self._fake._transports.discard(self._transport)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        if self._transport.is_closing():
            return

        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._transport.write(self._h2.data_to_send())
            self._transport.close()
            return

        for event in events:
            self._on_event(event)
        self._transport.write(self._h2.data_to_send())

    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._streams[event.stream_id] = (list(event.headers), bytearray())
        elif isinstance(event, h2.events.DataReceived):
            self._streams[event.stream_id][1].extend(event.data)
            self._h2.acknowledge_received_data(
                event.flow_controlled_length, event.stream_id
            )
        elif isinstance(event, h2.events.StreamEnded):
            headers, body = self._streams.pop(event.stream_id)
            self._respond(event.stream_id, *self._fake.answer(headers, bytes(body)))
        elif isinstance(event, h2.events.StreamReset):
            self._streams.pop(event.stream_id, None)

    def _respond(
        self, stream_id: int, status: int, extra: dict[str, str], body: bytes
    ) -> None:
        headers = [(":status", str(status)), ("apns-id", str(uuid.uuid4()))]
        headers += list(extra.items())
        if body:
            headers += [
                ("content-type", "application/json; charset=utf-8"),
                ("content-length", str(len(body))),
            ]
        self._h2.send_headers(stream_id, headers, end_stream=not body)
        if body:
            self._h2.send_data(stream_id, body, end_stream=True)


# ----------------------------------------------------------------------------
# Servers for the HTTP/1.1 fakes, on a loopback socket of their own.
# ----------------------------------------------------------------------------


class _AiohttpServer:
    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self._port}"

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, ssl_context=self._ssl_context).start()

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


# ----------------------------------------------------------------------------
# FCM: an OAuth 2.0 token endpoint and the HTTP v1 send endpoint.
# ----------------------------------------------------------------------------

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_MAX_PAYLOAD_BYTES = 4096
_FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
_FCM_TOKEN = re.compile(r"[A-Za-z0-9_:\-]{32,4096}")
_FCM_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_MESSAGE_FIELDS = {
    "name",
    "data",
    "notification",
    "android",
    "webpush",
    "apns",
    "fcm_options",
    "token",
    "topic",
    "condition",
}
_ANDROID_FIELDS = {
    "collapse_key",
    "priority",
    "ttl",
    "restricted_package_name",
    "data",
    "notification",
    "fcm_options",
    "direct_boot_ok",
}
_ANDROID_NOTIFICATION_FIELDS = {
    "title",
    "body",
    "icon",
    "color",
    "sound",
    "tag",
    "click_action",
    "channel_id",
    "ticker",
    "sticky",
    "notification_priority",
    "default_sound",
    "visibility",
    "notification_count",
    "image",
}
_APNS_FIELDS = {"headers", "payload", "fcm_options", "live_activity_token"}
_RESERVED_DATA_KEYS = {"from", "notification", "message_type"}
_DURATION = re.compile(r"\d+(\.\d{1,9})?s")


@dataclass
class FcmRefusal(Exception):
    """An error answer of the fake FCM, with the v1 error body's parts."""

    status: int
    message: str
    error_code: str | None = None
    violations: list[tuple[str, str]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        details: list[dict[str, Any]] = []
        if self.error_code:
            details.append({"@type": _FCM_ERROR, "errorCode": self.error_code})
        if self.violations:
            details.append(
                {
                    "@type": _BAD_REQUEST,
                    "fieldViolations": [
                        {"field": name, "description": why}
                        for name, why in self.violations
                    ],
                }
            )
        error: dict[str, Any] = {
            "code": self.status,
            "message": self.message,
            "status": _FCM_STATUSES[self.status],
        }
        if details:
            error["details"] = details
        return {"error": error}


@dataclass
class OAuthRefusal(Exception):
    """An error answer of the fake token endpoint (RFC 6749 section 5.2)."""

    error: str
    description: str


class FakeFcm(_AiohttpServer, _Failures):
    """Google's token endpoint and FCM's v1 API for one Firebase project."""

    def __init__(
        self,
        *,
        project_id: str,
        client_email: str,
        private_key_id: str,
        public_key: rsa.RSAPublicKey,
        access_token_lifetime_s: int = 3600,
    ) -> None:
        _AiohttpServer.__init__(self)
        _Failures.__init__(self)
        self.project_id = project_id
        self.client_email = client_email
        self.private_key_id = private_key_id
        self.public_key = public_key
        self.access_token_lifetime_s = access_token_lifetime_s
        self.registered: set[str] = set()
        self.access_tokens: list[str] = []
        self.grants: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []
        self.refusals: list[FcmRefusal] = []
        self._revoked: set[str] = set()

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def register(self) -> str:
        """A new registration token that the fake delivers to."""
        token = secrets.token_urlsafe(24) + ":APA91b" + secrets.token_urlsafe(96)
        self.registered.add(token)
        return token

    def unregister(self, token: str) -> None:
        self.registered.discard(token)

    def revoke_access_tokens(self) -> None:
        self._revoked.update(self.access_tokens)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/token", self._token),
            web.post("/v1/projects/{project}/messages:send", self._send),
        ]

    async def _token(self, request: web.Request) -> web.Response:
        """The JWT-bearer grant (RFC 7523) as Google's token endpoint runs it."""
        if request.content_type != "application/x-www-form-urlencoded":
            return _oauth_error("invalid_request", "Bad content type.")
        form = {
            name: values[0] for name, values in parse_qs(await request.text()).items()
        }
        if form.get("grant_type") != JWT_BEARER:
            return _oauth_error("unsupported_grant_type", "Invalid grant_type.")

        try:
            claims = self._check_assertion(form.get("assertion", ""))
        except OAuthRefusal as refusal:
            return _oauth_error(refusal.error, refusal.description)

        self.grants.append(claims)
        access_token = "ya29.fake-" + secrets.token_urlsafe(32)
        self.access_tokens.append(access_token)
        return web.json_response(
            {
                "access_token": access_token,
                "expires_in": self.access_token_lifetime_s,
                "token_type": "Bearer",
            }
        )

    def _check_assertion(self, assertion: str) -> dict[str, Any]:
        """The claims of a grant's JWT, checked as Google checks them."""
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(
                assertion,
                self.public_key,
                algorithms=["RS256"],
                audience=self.token_uri,
                issuer=self.client_email,
                options={"require": ["iss", "aud", "iat", "exp"]},
            )
        except jwt.InvalidTokenError as error:
            raise OAuthRefusal("invalid_grant", "Invalid JWT.") from error

        if header.get("kid") != self.private_key_id:
            raise OAuthRefusal("invalid_grant", "Invalid JWT Signature.")
        if claims["exp"] - claims["iat"] > 3600:
            raise OAuthRefusal("invalid_grant", "Invalid JWT: lifetime over an hour.")
        if FCM_SCOPE not in str(claims.get("scope", "")).split():
            raise OAuthRefusal("invalid_scope", "The FCM scope is missing.")
        return claims

    async def _send(self, request: web.Request) -> web.Response:
        try:
            self._check_access_token(request.headers.get("Authorization", ""))
            if request.match_info["project"] != self.project_id:
                raise FcmRefusal(403, "Permission denied.", "SENDER_ID_MISMATCH")
            body = await request.read()
            message = self._check_message(request.content_type, body)
            self._check_target(message["token"])
        except FcmRefusal as refusal:
            self.refusals.append(refusal)
            return web.json_response(refusal.body(), status=refusal.status)

        failure = self._next_failure()
        if failure is not None:
            refusal = FcmRefusal(failure.status, "Try again later.", failure.reason)
            self.refusals.append(refusal)
            return web.json_response(
                refusal.body(), status=failure.status, headers=_retry_after(failure)
            )

        self.received.append(message)
        self.bodies.append(body)
        name = f"projects/{self.project_id}/messages/{len(self.received)}"
        return web.json_response({"name": name})

    def _check_access_token(self, authorization: str) -> None:
        scheme, _, token = authorization.partition(" ")
        known = token in self.access_tokens and token not in self._revoked
        if scheme != "Bearer" or not known:
            raise FcmRefusal(401, "Request had invalid authentication credentials.")

    def _check_message(self, content_type: str, body: bytes) -> dict[str, Any]:
        if content_type != "application/json":
            raise FcmRefusal(400, "Invalid JSON payload received.")
        try:
            request = json.loads(body)
        except ValueError as error:
            raise FcmRefusal(400, "Invalid JSON payload received.") from error
        if not isinstance(request, dict) or not isinstance(
            request.get("message"), dict
        ):
            raise FcmRefusal(400, "Invalid JSON payload received.")

        message = request["message"]
        violations = _message_violations(message)
        if set(request) - {"message", "validate_only"}:
            violations.append(("", "Unknown name at top level."))
        if violations:
            raise FcmRefusal(
                400,
                "Request contains an invalid argument.",
                "INVALID_ARGUMENT",
                violations,
            )
        return message

    def _check_target(self, token: str) -> None:
        if not _FCM_TOKEN.fullmatch(token):
            raise FcmRefusal(
                400,
                "The registration token is not a valid FCM registration token",
                "INVALID_ARGUMENT",
            )
        if token not in self.registered:
            raise FcmRefusal(404, "Requested entity was not found.", "UNREGISTERED")


def _message_violations(message: dict[str, Any]) -> list[tuple[str, str]]:
    """What FCM would refuse in a v1 message, as (field, description) pairs."""
    violations = _unknown(message, _MESSAGE_FIELDS, "message")

    targets = [name for name in ("token", "topic", "condition") if name in message]
    if targets != ["token"] or not isinstance(message["token"], str):
        violations.append(("message", "Exactly one target: a token string."))

    violations += _data_violations(message.get("data", {}))
    notification = message.get("notification", {})
    violations += _unknown(notification, {"title", "body", "image"}, "notification")
    violations += _strings(notification, "message.notification")
    violations += _android_violations(message.get("android", {}))
    violations += _apns_violations(message.get("apns", {}))

    size = len(json.dumps([message.get("data"), notification]).encode())
    if size > FCM_MAX_PAYLOAD_BYTES:
        violations.append(("message", "Message is too big."))
    return violations


def _data_violations(data: Any) -> list[tuple[str, str]]:
    if not isinstance(data, dict):
        return [("message.data", "Data is a map of strings.")]
    violations = _strings(data, "message.data")
    for key in data:
        if key in _RESERVED_DATA_KEYS or key.startswith(("google", "gcm")):
            violations.append((f"message.data[{key}]", "Reserved data key."))
    return violations


def _android_violations(android: Any) -> list[tuple[str, str]]:
    if not isinstance(android, dict):
        return [("message.android", "Not an object.")]
    violations = _unknown(android, _ANDROID_FIELDS, "android")

    if android.get("priority", "normal").lower() not in {"normal", "high"}:
        violations.append(("message.android.priority", "Invalid priority."))
    if not _DURATION.fullmatch(str(android.get("ttl", "0s"))):
        violations.append(("message.android.ttl", "Invalid duration."))
    if not isinstance(android.get("collapse_key", ""), str):
        violations.append(("message.android.collapse_key", "Not a string."))

    notification = android.get("notification", {})
    violations += _unknown(
        notification, _ANDROID_NOTIFICATION_FIELDS, "android.notification"
    )
    count = notification.get("notification_count", 0)
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        violations.append(
            ("message.android.notification.notification_count", "Not a count.")
        )
    return violations


def _apns_violations(apns: Any) -> list[tuple[str, str]]:
    if not isinstance(apns, dict):
        return [("message.apns", "Not an object.")]
    violations = _unknown(apns, _APNS_FIELDS, "apns")
    violations += _strings(apns.get("headers", {}), "message.apns.headers")

    payload = apns.get("payload", {"aps": {}})
    if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
        violations.append(("message.apns.payload", "The payload needs aps."))
    return violations


def _unknown(value: Any, known: set[str], where: str) -> list[tuple[str, str]]:
    if not isinstance(value, dict):
        return [(f"message.{where}", "Not an object.")]
    return [
        (f"message.{where}", f'Unknown name "{name}": Cannot find field.')
        for name in sorted(set(value) - known)
    ]


def _strings(values: Any, where: str) -> list[tuple[str, str]]:
    if not isinstance(values, dict):
        return [(where, "Not a map of strings.")]
    return [
        (f"{where}[{key}]", "Values are strings.")
        for key, value in values.items()
        if not isinstance(value, str)
    ]


def _oauth_error(error: str, description: str) -> web.Response:
    return web.json_response(
        {"error": error, "error_description": description}, status=400
    )


# ----------------------------------------------------------------------------
# Web Push: one push service's endpoints, which decrypt as the browser would.
# ----------------------------------------------------------------------------

WEBPUSH_MAX_BODY_BYTES = 4096
_URGENCIES = {"very-low", "low", "normal", "high"}
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")


@dataclass
class Subscription:
    """One browser's subscription, with the keys only the browser holds."""

    id: str
    address: PushAddress
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes
    application_server_key: str
    active: bool = True


@dataclass(frozen=True)
class WebPushRequest:
    """A message the fake push service accepted, decrypted for the test."""

    address: PushAddress
    headers: dict[str, str]
    body: bytes
    plaintext: bytes
    vapid_token: str
    vapid_claims: dict[str, Any]

    @property
    def message(self) -> dict[str, Any]:
        return json.loads(self.plaintext)


@dataclass
class WebPushRefusal(Exception):
    """An error answer of the fake push service, in autopush's JSON shape."""

    status: int
    error: str
    message: str

    def body(self) -> dict[str, Any]:
        return {
            "code": self.status,
            "errno": 999,
            "error": self.error,
            "message": self.message,
        }


class FakeWebPush(_AiohttpServer, _Failures):
    """A browser vendor's push service, over TLS, for the subscriptions it makes."""

    def __init__(
        self, *, ssl_context: ssl.SSLContext, clock: Clock = time.time
    ) -> None:
        _AiohttpServer.__init__(self, ssl_context)
        _Failures.__init__(self)
        self.clock = clock
        self.subscriptions: dict[str, Subscription] = {}
        self.received: list[WebPushRequest] = []
        self.refusals: list[WebPushRefusal] = []
        self.vapid_tokens: list[str] = []

    def subscribe(self, application_server_key: str) -> PushAddress:
        """A new subscription, as a browser makes one for the given server key."""
        private_key = ec.generate_private_key(ec.SECP256R1())
        public_raw = private_key.public_key().public_bytes(
            Encoding.X962, PublicFormat.UncompressedPoint
        )
        auth_secret = secrets.token_bytes(16)
        subscription_id = secrets.token_urlsafe(16)
        address = PushAddress(
            service="webpush",
            token=f"{self.url}/wpush/v2/{subscription_id}",
            p256dh=_b64url(public_raw),
            auth=_b64url(auth_secret),
        )
        self.subscriptions[subscription_id] = Subscription(
            subscription_id, address, private_key, auth_secret, application_server_key
        )
        return address

    def unsubscribe(self, address: PushAddress) -> None:
        """The browser dropped the subscription: its endpoint answers 410."""
        subscription_id = address.token.rsplit("/", 1)[1]
        self.subscriptions[subscription_id].active = False

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/wpush/v2/{id}", self._push)]

    async def _push(self, request: web.Request) -> web.Response:
        try:
            subscription = self._subscription(request.match_info["id"])
            token, claims = self._check_vapid(request, subscription)
            headers = self._check_headers(request)
            body = await request.read()
            plaintext = self._decrypt(body, subscription)
        except WebPushRefusal as refusal:
            self.refusals.append(refusal)
            return web.json_response(refusal.body(), status=refusal.status)

        failure = self._next_failure()
        if failure is not None:
            refusal = WebPushRefusal(failure.status, failure.reason, "Try again later.")
            self.refusals.append(refusal)
            return web.json_response(
                refusal.body(), status=failure.status, headers=_retry_after(failure)
            )

        self.received.append(
            WebPushRequest(
                subscription.address, headers, body, plaintext, token, claims
            )
        )
        return web.Response(
            status=201,
            headers={
                "Location": f"{self.url}/m/{secrets.token_urlsafe(12)}",
                "TTL": headers["ttl"],
            },
        )

    def _subscription(self, subscription_id: str) -> Subscription:
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None:
            raise WebPushRefusal(404, "Not Found", "No such subscription.")
        if not subscription.active:
            raise WebPushRefusal(410, "Gone", "The subscription has expired.")
        return subscription

    def _check_vapid(
        self, request: web.Request, subscription: Subscription
    ) -> tuple[str, dict[str, Any]]:
        """The VAPID token, checked as RFC 8292 asks of a push service."""
        params = _vapid_params(request.headers.get("Authorization", ""))
        token, key = params.get("t", ""), params.get("k", "")
        if key != subscription.application_server_key:
            raise WebPushRefusal(403, "Forbidden", "Not the subscription's key.")

        try:
            public_key = ec.EllipticCurvePublicKey.from_encoded_point(
                ec.SECP256R1(), _b64url_decode(key)
            )
            claims = jwt.decode(
                token,
                public_key,
                algorithms=["ES256"],
                audience=f"{self.url}",
                options={"require": ["aud", "exp", "sub"], "verify_exp": False},
            )
        except (ValueError, jwt.InvalidTokenError) as error:
            raise WebPushRefusal(401, "Unauthorized", "Invalid VAPID token.") from error

        # RFC 8292 section 2: no more than 24 hours ahead.
        now_s = self.clock()
        if not now_s < claims["exp"] <= now_s + 24 * 3600:
            raise WebPushRefusal(401, "Unauthorized", "VAPID token expiry is bad.")
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            raise WebPushRefusal(401, "Unauthorized", "VAPID sub is no contact.")

        if token not in self.vapid_tokens:
            self.vapid_tokens.append(token)
        return token, claims

    def _check_headers(self, request: web.Request) -> dict[str, str]:
        headers = {name.lower(): value for name, value in request.headers.items()}
        if not headers.get("ttl", "").isdigit():
            raise WebPushRefusal(400, "Bad Request", "Missing or bad TTL header.")
        if headers.get("urgency", "normal") not in _URGENCIES:
            raise WebPushRefusal(400, "Bad Request", "Bad Urgency header.")
        if "topic" in headers and not _TOPIC.fullmatch(headers["topic"]):
            raise WebPushRefusal(400, "Bad Request", "Bad Topic header.")
        if headers.get("content-encoding") != "aes128gcm":
            raise WebPushRefusal(400, "Bad Request", "Unknown Content-Encoding.")
        return headers

    def _decrypt(self, body: bytes, subscription: Subscription) -> bytes:
        """The plaintext, decrypted with the browser's keys (RFC 8291)."""
        if len(body) > WEBPUSH_MAX_BODY_BYTES:
            raise WebPushRefusal(413, "Payload Too Large", "Body over 4096 bytes.")

        # The aes128gcm header's key id is the sender's 65-byte public key.
        if len(body) < 21 or body[20] != 65:
            raise WebPushRefusal(400, "Bad Request", "Bad aes128gcm header.")
        try:
            return http_ece.decrypt(
                body,
                private_key=subscription.private_key,
                auth_secret=subscription.auth_secret,
                version="aes128gcm",
            )
        except http_ece.ECEException as error:
            raise WebPushRefusal(400, "Bad Request", "Decryption failed.") from error


def _vapid_params(authorization: str) -> dict[str, str]:
    """The ``t`` and ``k`` of a ``vapid`` Authorization header (RFC 8292)."""
    scheme, _, rest = authorization.partition(" ")
    if scheme.lower() != "vapid":
        return {}
    params = {}
    for part in rest.split(","):
        name, _, value = part.strip().partition("=")
        params[name] = value
    return params


def server_tls(ca: trustme.CA, alpn: list[str]) -> ssl.SSLContext:
    """A fake's TLS: a certificate for 127.0.0.1 from the test's authority."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    context.set_alpn_protocols(alpn)
    return context


def write_service_account(fcm: FakeFcm, key: rsa.RSAPrivateKey, path: Path) -> Path:
    """A service account JSON as Firebase's console gives it, aimed at the fake."""
    private_key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": PROJECT_ID,
        "private_key_id": fcm.private_key_id,
        "private_key": private_key_pem,
        "client_email": CLIENT_EMAIL,
        "client_id": "100000000000000000000",
        "token_uri": fcm.token_uri,
    }
    path.write_text(json.dumps(info))
    return path
