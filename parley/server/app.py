"""The ASGI application: wires storage, media, fan-out and presence together."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from parley import __version__
from parley.auth import verifier_from_settings
from parley.config import Settings
from parley.errors import BadRequest, ParleyError
from parley.fanout.local import LocalFanout
from parley.media.local import LocalMediaStore
from parley.presence.local import LocalPresence
from parley.server import http
from parley.server.gateway import Gateway
from parley.server.messenger import Messenger
from parley.storage.sql import SqlStore

log = structlog.get_logger(__name__)

Clock = Callable[[], int]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def create_app(settings: Settings, clock: Clock = wall_clock_ms) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = SqlStore(
            settings.resolved_database_url,
            clock,
            max_group_members=settings.max_group_members,
        )
        await store.open()
        media_dir = settings.resolved_media_dir
        media_dir.mkdir(parents=True, exist_ok=True)
        fanout = LocalFanout()
        await fanout.start()

        messenger = Messenger(
            settings, store, LocalMediaStore(media_dir), fanout, LocalPresence(), clock
        )
        app.state.messenger = messenger
        app.state.verifier = verifier_from_settings(settings)
        app.state.gateway = Gateway(messenger, app.state.verifier)
        log.info("node started", version=__version__, database=_engine_name(settings))
        try:
            yield
        finally:
            app.state.gateway.drain()
            await fanout.stop()
            await store.close()
            log.info("node stopped")

    app = FastAPI(
        title="Parley",
        version=__version__,
        summary="A messenger server: chats, messages, images, receipts and presence.",
        lifespan=lifespan,
    )
    app.include_router(http.router)
    _add_error_handlers(app)
    _add_operations(app)

    @app.websocket("/v1/ws")
    async def websocket(websocket: WebSocket) -> None:
        await websocket.app.state.gateway.serve(websocket)

    return app


def _engine_name(settings: Settings) -> str:
    return settings.resolved_database_url.split(":", 1)[0]


def _error_response(error: ParleyError) -> JSONResponse:
    return JSONResponse({"error": error.to_dict()}, status_code=error.status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed"}
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

    @app.get("/readyz", tags=["operations"])
    async def ready(request: Request) -> JSONResponse:
        """The node can serve: storage and media storage answer."""
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
            checks["fanout"] = "unavailable"
        ready_ = all(state == "ok" for state in checks.values())
        return JSONResponse(
            {"status": "ready" if ready_ else "unavailable", "checks": checks},
            status_code=200 if ready_ else 503,
        )

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics of this node."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
