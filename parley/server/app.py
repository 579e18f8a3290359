"""The ASGI application: wires storage, media, fan-out and presence together."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from parley import __version__
from parley.auth import verifier_from_settings
from parley.config import Settings
from parley.errors import BadRequest, ParleyError, PayloadTooLarge
from parley.fanout.local import LocalFanout
from parley.fanout.redis import RedisFanout
from parley.media.local import LocalMediaStore
from parley.media.s3 import S3MediaStore
from parley.metrics import REFUSALS
from parley.ports import Fanout, MediaStore, Presence
from parley.presence.local import LocalPresence
from parley.presence.redis import RedisPresence
from parley.server import http
from parley.server.gateway import Gateway
from parley.server.messenger import Messenger
from parley.server.pusher import Pusher, services_from_settings
from parley.server.sockets import Sockets
from parley.storage.sql import SqlStore

log = structlog.get_logger(__name__)

Clock = Callable[[], int]

WEBSOCKET_PATH = "/v1/ws"
UPLOAD_PATH = "/v1/media"


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def create_app(settings: Settings, clock: Clock = wall_clock_ms) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store, media_store, fanout, presence = build_adapters(settings, clock)
        await store.open()
        for part in (media_store, fanout, presence):
            await part.start()

        messenger = Messenger(settings, store, media_store, fanout, presence, clock)
        pusher = Pusher(
            settings, store, presence, services_from_settings(settings), clock
        )
        await pusher.start()
        messenger.on_pushes_due = pusher.wake
        app.state.messenger = messenger
        app.state.verifier = verifier_from_settings(settings)
        app.state.gateway = Gateway(messenger, app.state.verifier)
        reconciling = None
        if settings.redis_url:
            reconciling = asyncio.create_task(
                app.state.gateway.reconcile_forever(settings.reconcile_interval_s)
            )
        log.info(
            "node started",
            address=f"http://{settings.host}:{settings.port}",
            version=__version__,
            database=_engine_name(settings),
            fanout=type(fanout).__name__,
            media=type(media_store).__name__,
            push=pusher.services,
        )
        try:
            yield
        finally:
            app.state.gateway.drain()
            if reconciling is not None:
                reconciling.cancel()
            await pusher.stop()
            for part in (presence, fanout, media_store):
                await part.stop()
            await store.close()
            log.info("node stopped")

    app = FastAPI(
        title="Parley",
        version=__version__,
        summary="A messenger server: chats, messages, images, receipts and presence.",
        lifespan=lifespan,
        # The interactive pages load scripts from a CDN; a self-hosted server
        # should not send its users' browsers elsewhere. /openapi.json stays.
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(http.router)
    _add_error_handlers(app)
    _add_operations(app)

    return app


def create_node(settings: Settings, clock: Clock = wall_clock_ms) -> ASGIApp:
    """The node as Uvicorn serves it: the HTTP API, and the WebSocket gateway.

    WebSocket connections at ``/v1/ws`` go straight to the gateway rather
    than through the HTTP framework's middleware, whose per-request state
    would stay alive for as long as each connection does.
    """
    api = create_app(settings, clock)
    http = BodyLimit(api, settings.max_frame_bytes)
    sockets = Sockets()

    async def node(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == WEBSOCKET_PATH:
            websocket = WebSocket(scope, receive, send)
            socket = sockets.open(send)
            try:
                await api.state.gateway.serve(websocket, socket)
            finally:
                if socket is not None:
                    sockets.close(socket)
        else:
            await http(scope, receive, send)

    return node


class BodyLimit:
    """Refuses a request body over its limit before it is read into memory.

    JSON bodies are held to the size of a WebSocket frame. Image uploads are
    left to their route, which counts their bytes against the image limit.
    """

    def __init__(self, app: ASGIApp, json_bytes: int) -> None:
        self._app = app
        self._json_bytes = json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == UPLOAD_PATH:
            await self._app(scope, receive, send)
            return

        limit = self._json_bytes
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(limit)(scope, receive, send)
            return

        # Without a declared length (chunked), read up to the limit first.
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                await _too_large(limit)(scope, receive, send)
                return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self._app(scope, replay, send)


def _too_large_error(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        "body_too_large", f"A request body is at most {limit} bytes here."
    )


def _too_large(limit: int) -> JSONResponse:
    return _error_response(_too_large_error(limit))


def build_adapters(
    settings: Settings, clock: Clock
) -> tuple[SqlStore, MediaStore, Fanout, Presence]:
    """The embedded default, or an existing engine where one is configured."""
    store = SqlStore(
        settings.resolved_database_url,
        clock,
        max_group_members=settings.max_group_members,
        receipts_max_chat_members=settings.receipts_max_chat_members,
        push_delay_ms=settings.push_delay_ms,
    )

    media_store: MediaStore
    if settings.s3_bucket:
        media_store = S3MediaStore(
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
        )
    else:
        media_store = LocalMediaStore(settings.resolved_media_dir)

    fanout: Fanout
    presence: Presence
    if settings.redis_url:
        node_id = settings.node_id or uuid.uuid4().hex[:12]
        prefix = settings.redis_prefix
        fanout = RedisFanout(settings.redis_url, prefix)
        presence = RedisPresence(
            settings.redis_url, node_id, settings.presence_ttl_s, prefix
        )
    else:
        fanout, presence = LocalFanout(), LocalPresence()
    return store, media_store, fanout, presence


def _engine_name(settings: Settings) -> str:
    return settings.resolved_database_url.split(":", 1)[0]


def _error_response(error: ParleyError) -> JSONResponse:
    if error.status < 500:
        REFUSALS.labels(error.code).inc()
    return JSONResponse({"error": error.to_dict()}, status_code=error.status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        codes = {
            400: "malformed_json",
            404: "not_found",
            405: "method_not_allowed",
            413: "body_too_large",
        }
        code = codes.get(error.status_code, "http_error")
        refusal = ParleyError(code, str(error.detail) + ".")
        refusal.status = error.status_code
        return _error_response(refusal)

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception) -> JSONResponse:
        log.error(
            "request failed",
            method=request.method,
            path=request.url.path,
            error=type(error).__name__,
            exc_info=error,
        )
        return _error_response(ParleyError())

    @app.exception_handler(ParleyError)
    async def refused(request: Request, error: ParleyError) -> JSONResponse:
        return _error_response(error)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        first = problems[0] if problems else {}
        if first.get("type") == "json_invalid":
            return _error_response(
                BadRequest("malformed_json", "The body is not valid JSON.")
            )
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = (
            f"Field '{where}': {first.get('msg', 'invalid')}."
            if where
            else ("The request is not valid.")
        )
        return _error_response(BadRequest("invalid_field", message))


def _add_operations(app: FastAPI) -> None:
    @app.get("/healthz", tags=["operations"])
    async def health() -> dict:
        """The process answers."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        responses={503: {"description": "Storage or media storage is unavailable."}},
    )
    async def ready(request: Request) -> JSONResponse:
        """The node can serve: storage and media storage answer.

        Fan-out that is down degrades the node (devices learn of news when it
        returns) but does not stop it: messages are still stored and answered.
        """
        messenger: Messenger = request.app.state.messenger
        checks = {"storage": "ok", "media": "ok", "fanout": "ok"}
        try:
            await messenger.store.check()
        except ParleyError:
            checks["storage"] = "unavailable"
        try:
            await messenger.media_store.check()
        except OSError:
            checks["media"] = "unavailable"
        if not messenger.fanout.healthy():
            checks["fanout"] = "degraded"

        if "unavailable" in checks.values():
            status, code = "unavailable", 503
        elif "degraded" in checks.values():
            status, code = "degraded", 200
        else:
            status, code = "ready", 200
        return JSONResponse({"status": status, "checks": checks}, status_code=code)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics of this node."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
