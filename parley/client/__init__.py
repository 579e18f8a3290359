"""A Python client of Parley: the HTTP API and a device's live WebSocket.

    async with ParleyClient("http://127.0.0.1:8080", token) as client:
        chat = await client.open_private_chat("bob")
        async with client.connect() as device:
            sent = await device.send(chat["id"], "hello")
            frame = await device.next_event()

A ``Device`` acknowledges what it receives (so senders see it delivered) and
remembers its cursor, so that a new connection picks up where it left off.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import websockets

_ACK_DELAY_S = 0.05


class ParleyClientError(Exception):
    """A refusal from the server, with its stable code."""

    def __init__(self, status: int | None, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ConnectionClosedByServer(ParleyClientError):
    """The live connection ended; ``close_code`` says why (see docs/api.md)."""

    def __init__(self, close_code: int | None, reason: str) -> None:
        super().__init__(None, reason or "closed", f"connection closed ({close_code})")
        self.close_code = close_code


class ParleyClient:
    """One user's (and one device's) access to a Parley server."""

    def __init__(self, base_url: str, token: str, *, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
        )

    async def __aenter__(self) -> ParleyClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        if "json" in kwargs:
            # ASCII-escaped JSON carries any string the caller has, as the
            # server's own checks should judge it, not the encoder here.
            kwargs["content"] = json.dumps(kwargs.pop("json"))
            kwargs["headers"] = {"Content-Type": "application/json"}
        response = await self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _refusal(response)
        if response.status_code == 204:
            return None
        return response.json()

    # -- chats ------------------------------------------------------------

    async def open_private_chat(self, user_id: str) -> dict:
        return await self._call("POST", "/v1/chats/private", json={"user_id": user_id})

    async def create_group(self, title: str, members: list[str]) -> dict:
        return await self._call(
            "POST", "/v1/chats/groups", json={"title": title, "members": members}
        )

    async def chats(self, limit: int = 100, offset: int = 0) -> list[dict]:
        """A page of your chats, most recent activity first."""
        page = await self._call(
            "GET", "/v1/chats", params={"limit": limit, "offset": offset}
        )
        return page["chats"]

    async def chat(self, chat_id: int) -> dict:
        return await self._call("GET", f"/v1/chats/{chat_id}")

    async def add_member(self, chat_id: int, user_id: str) -> dict:
        return await self._call(
            "POST", f"/v1/chats/{chat_id}/members", json={"user_id": user_id}
        )

    async def remove_member(self, chat_id: int, user_id: str) -> None:
        await self._call("DELETE", f"/v1/chats/{chat_id}/members/{user_id}")

    # -- messages ---------------------------------------------------------

    async def send(
        self,
        chat_id: int,
        text: str | None = None,
        *,
        images: list[str] | None = None,
        client_id: str | None = None,
    ) -> dict:
        """Send over HTTP; returns ``{"message": ..., "duplicate": ...}``."""
        body = {
            "client_id": client_id or new_client_id(),
            "text": text,
            "images": images or [],
        }
        return await self._call("POST", f"/v1/chats/{chat_id}/messages", json=body)

    async def history(
        self,
        chat_id: int,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
    ) -> list[dict]:
        params = {"limit": limit}
        if before is not None:
            params["before"] = before
        if after is not None:
            params["after"] = after
        page = await self._call("GET", f"/v1/chats/{chat_id}/messages", params=params)
        return page["messages"]

    async def read(self, chat_id: int, seq: int) -> dict:
        return await self._call("POST", f"/v1/chats/{chat_id}/read", json={"seq": seq})

    async def receipts(self, chat_id: int, seq: int) -> dict:
        return await self._call("GET", f"/v1/chats/{chat_id}/messages/{seq}/receipts")

    async def events(self, after: int = 0, limit: int = 500) -> dict:
        return await self._call(
            "GET", "/v1/events", params={"after": after, "limit": limit}
        )

    async def ack_events(self, cursor: int) -> None:
        """Acknowledge the log up to ``cursor`` without a WebSocket."""
        await self._call("POST", "/v1/events/ack", json={"cursor": cursor})

    # -- images and presence ------------------------------------------------

    async def upload_image(self, content: bytes) -> dict:
        return await self._call(
            "POST",
            "/v1/media",
            content=content,
            headers={"Content-Type": "application/octet-stream"},
        )

    async def download_image(
        self, media_id: str, *, chat_id: int | None = None, thumbnail: bool = False
    ) -> bytes:
        """An image of a message in ``chat_id``, or, without it, your own upload."""
        prefix = f"/v1/chats/{chat_id}" if chat_id is not None else "/v1"
        path = f"{prefix}/media/{media_id}" + ("/thumbnail" if thumbnail else "")
        response = await self._http.get(path)
        if response.status_code >= 400:
            raise _refusal(response)
        return response.content

    async def presence(self, user_id: str) -> dict:
        return await self._call("GET", f"/v1/users/{user_id}/presence")

    # -- live connection ----------------------------------------------------

    def connect(self, cursor: int | None = None, *, auto_ack: bool = True) -> Device:
        """A live device connection; use it with ``async with``."""
        return Device(self, cursor, auto_ack=auto_ack)


class Device:
    """A device's WebSocket: events in cursor order, commands with replies."""

    def __init__(
        self, client: ParleyClient, cursor: int | None, *, auto_ack: bool
    ) -> None:
        self.client = client
        self.cursor = cursor
        self.auto_ack = auto_ack
        self.welcome: dict | None = None
        self.events: asyncio.Queue[dict] = asyncio.Queue()
        self.closed: asyncio.Future[tuple[int | None, str]] | None = None
        self._socket: Any = None
        self._replies: dict[str, asyncio.Future[dict]] = {}
        self._refs = itertools.count(1)
        self._acked = cursor or 0
        self._tasks: list[asyncio.Task] = []
        self.synced = asyncio.Event()

    async def __aenter__(self) -> Device:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        url = self.client.base_url.replace("http", "ws", 1) + "/v1/ws"
        self._socket = await websockets.connect(url, max_size=2**20, open_timeout=10)
        self.closed = asyncio.get_running_loop().create_future()

        hello: dict[str, Any] = {"type": "hello", "token": self.client.token}
        if self.cursor is not None:
            hello["cursor"] = self.cursor
        await self._socket.send(json.dumps(hello))

        first = json.loads(await asyncio.wait_for(self._socket.recv(), 10))
        if first.get("type") == "error":
            await self._socket.close()
            raise ParleyClientError(None, first["code"], first["message"])
        self.welcome = first
        self.cursor = first["cursor"]
        self._acked = self.cursor

        self._tasks = [asyncio.create_task(self._read_frames())]
        if self.auto_ack:
            self._tasks.append(asyncio.create_task(self._ack_loop()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._socket is not None:
            await self._socket.close()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame, as a lost network does."""
        for task in self._tasks:
            task.cancel()
        transport = getattr(self._socket, "transport", None)
        if transport is not None:
            transport.abort()

    async def _read_frames(self) -> None:
        try:
            async for raw in self._socket:
                self._on_frame(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        finally:
            close_code = getattr(self._socket, "close_code", None)
            reason = getattr(self._socket, "close_reason", "") or ""
            if self.closed is not None and not self.closed.done():
                self.closed.set_result((close_code, reason))
            # Whoever waits for events learns that no more will come.
            self.events.put_nowait(
                {"type": "closed", "code": close_code, "reason": reason}
            )
            for future in self._replies.values():
                if not future.done():
                    future.set_exception(
                        ParleyClientError(None, "closed", "Connection closed.")
                    )

    def _on_frame(self, frame: dict) -> None:
        if frame.get("type") == "events":
            for event in frame["events"]:
                self._on_frame(event)
            return
        ref = frame.get("ref")
        if ref is not None and ref in self._replies:
            self._replies.pop(ref).set_result(frame)
            return
        if frame.get("type") == "synced":
            self.synced.set()
        elif "cursor" in frame:
            self.cursor = frame["cursor"]
        self.events.put_nowait(frame)

    async def _ack_loop(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await asyncio.sleep(_ACK_DELAY_S)
                if self.cursor is not None and self.cursor > self._acked:
                    await self.ack(self.cursor)

    async def ack(self, cursor: int) -> None:
        self._acked = max(self._acked, cursor)
        await self._socket.send(json.dumps({"type": "ack", "cursor": cursor}))

    async def _request(self, frame: dict, timeout_s: float = 10.0) -> dict:
        ref = f"r{next(self._refs)}"
        future: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        self._replies[ref] = future
        await self._socket.send(json.dumps({**frame, "ref": ref}))
        try:
            reply = await asyncio.wait_for(future, timeout_s)
        finally:
            self._replies.pop(ref, None)
        if reply["type"] == "error":
            raise ParleyClientError(None, reply["code"], reply["message"])
        return reply

    async def send(
        self,
        chat_id: int,
        text: str | None = None,
        *,
        images: list[str] | None = None,
        client_id: str | None = None,
    ) -> dict:
        """Send over the WebSocket; returns the ``sent`` reply once stored."""
        return await self._request(
            {
                "type": "send",
                "chat_id": chat_id,
                "client_id": client_id or new_client_id(),
                "text": text,
                "images": images or [],
            }
        )

    async def read(self, chat_id: int, seq: int) -> dict:
        return await self._request({"type": "read", "chat_id": chat_id, "seq": seq})

    async def ping(self) -> dict:
        return await self._request({"type": "ping"})

    async def next_event(self, timeout_s: float = 5.0) -> dict:
        return await asyncio.wait_for(self.events.get(), timeout_s)

    async def wait_for(
        self, predicate: Callable[[dict], bool], timeout_s: float = 5.0
    ) -> dict:
        """The next event that ``predicate`` accepts; others are passed over."""
        async with asyncio.timeout(timeout_s):
            while True:
                frame = await self.events.get()
                if predicate(frame):
                    return frame

    async def drain(self, quiet_s: float = 0.2) -> list[dict]:
        """Every event that arrives until none has for ``quiet_s``."""
        frames = []
        with contextlib.suppress(TimeoutError):
            while True:
                frames.append(await asyncio.wait_for(self.events.get(), quiet_s))
        return frames

    async def __aiter__(self) -> AsyncIterator[dict]:
        """Events until the connection closes; then ConnectionClosedByServer."""
        while True:
            frame = await self.events.get()
            if frame["type"] == "closed":
                raise ConnectionClosedByServer(frame["code"], frame["reason"])
            yield frame


def new_client_id() -> str:
    return uuid.uuid4().hex


def _refusal(response: httpx.Response) -> ParleyClientError:
    try:
        error = response.json()["error"]
        return ParleyClientError(response.status_code, error["code"], error["message"])
    except (ValueError, KeyError, TypeError):
        return ParleyClientError(
            response.status_code, "http_error", response.text[:200]
        )
