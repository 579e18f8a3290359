"""What the driver talks to: a running Parley (one node or many), or the relay.

Both hand out tokens, set up chats and name the WebSocket URL of each device,
so that the same workload code runs against either. Only loopback addresses
are accepted: the driver loads servers on this machine and nothing else.
"""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import jwt
import orjson

from parley.bench import wire
from parley.bench.devices import CONNECT_TIMEOUT_S

HTTP_TIMEOUT_S = 30.0
SETUP_CONCURRENCY = 16
TOKEN_TTL_S = 6 * 3600


class TargetError(Exception):
    """The target cannot be used as asked."""


def check_loopback(url: str) -> tuple[str, int]:
    """The host and port of an http:// URL on this machine; else TargetError."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise TargetError(f"{url}: give an http:// URL of a server on this machine")
    host = parts.hostname
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise TargetError(
                f"{url}: the driver only loads servers on loopback addresses "
                "(127.0.0.0/8, ::1, localhost)"
            )
    return host, parts.port or 80


def check_secret(data_dir: Path, jwt_secret: str) -> None:
    """Refuse to mint with a secret the server cannot know.

    Without a secret, minting would generate one in the data directory, which
    no running server shares.
    """
    if not jwt_secret and not (Path(data_dir) / "jwt-secret").exists():
        raise TargetError(
            "no token secret: give --jwt-secret (PARLEY_JWT_SECRET) or the "
            f"--data-dir of the server, which holds its jwt-secret (not {data_dir})"
        )


class ParleyTarget:
    """A running Parley: HTTP for setup, one WebSocket per simulated device."""

    name = "parley"

    def __init__(self, urls: list[str], settings: object) -> None:
        from parley.auth import mint_token

        for url in urls:
            check_loopback(url)
        self.urls = [url.rstrip("/") for url in urls]
        self._settings = settings
        self._mint = mint_token
        self._http = httpx.AsyncClient(
            base_url=self.urls[0],
            timeout=HTTP_TIMEOUT_S,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
            trust_env=False,
        )
        self._slots = asyncio.Semaphore(SETUP_CONCURRENCY)

    @property
    def ports(self) -> list[int]:
        return [check_loopback(url)[1] for url in self.urls]

    def token(self, user_id: str, device_id: str = "bench") -> str:
        return self._mint(self._settings, user_id, device_id, TOKEN_TTL_S)

    def ws_url(self, index: int) -> str:
        """Devices are spread over the nodes in turn."""
        base = self.urls[index % len(self.urls)]
        return "ws" + base[len("http") :] + "/v1/ws"

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, user_id: str, method: str, path: str, **kwargs) -> dict:
        headers = {"Authorization": f"Bearer {self.token(user_id)}"}
        headers.update(kwargs.pop("headers", {}))
        async with self._slots:
            response = await self._http.request(method, path, headers=headers, **kwargs)
        if response.status_code >= 400:
            answer = f"{response.status_code}: {response.text[:200]}"
            raise TargetError(f"{method} {path} answered {answer}")
        return response.json()

    async def open_private_chat(self, user_id: str, other_id: str) -> int:
        body = {"user_id": other_id}
        chat = await self._call(user_id, "POST", "/v1/chats/private", json=body)
        return chat["id"]

    async def create_group(self, admin_id: str, member_ids: list[str]) -> int:
        body = {"title": "bench", "members": member_ids}
        chat = await self._call(admin_id, "POST", "/v1/chats/groups", json=body)
        return chat["id"]

    async def upload_image(self, user_id: str, content: bytes) -> str:
        headers = {"Content-Type": "application/octet-stream"}
        image = await self._call(
            user_id, "POST", "/v1/media", content=content, headers=headers
        )
        return image["id"]

    async def history(self, user_id: str, chat_id: int, limit: int = 50) -> dict:
        """One history view: the newest page of a chat."""
        path = f"/v1/chats/{chat_id}/messages"
        return await self._call(user_id, "GET", path, params={"limit": limit})


class RelayTarget:
    """The bare relay: tokens it only reads, chats declared by a setup frame."""

    name = "relay"

    def __init__(self, url: str) -> None:
        check_loopback(url)
        self.urls = [url.rstrip("/")]
        self._control: wire.WireClient | None = None
        self._answers: asyncio.Queue[dict] = asyncio.Queue()
        self._lock = asyncio.Lock()

    @property
    def ports(self) -> list[int]:
        return [check_loopback(self.urls[0])[1]]

    def token(self, user_id: str, device_id: str = "bench") -> str:
        # The relay reads the claims without checking the signature.
        claims = {"sub": user_id, "device": device_id}
        return jwt.encode(
            claims,
            "the relay reads claims without checking this key",
            algorithm="HS256",
        )

    def ws_url(self, index: int) -> str:
        return "ws" + self.urls[0][len("http") :] + "/v1/ws"

    async def close(self) -> None:
        if self._control is not None:
            self._control.close()

    async def _declare(self, members: list[str]) -> int:
        async with self._lock:
            if self._control is None:
                self._control = await wire.connect(
                    self.ws_url(0), self._answers.put_nowait, CONNECT_TIMEOUT_S
                )
            frame = {"type": "chat", "ref": "setup", "members": members}
            self._control.send_text(orjson.dumps(frame))
            answer = orjson.loads(await asyncio.wait_for(self._answers.get(), 10))
        if answer.get("type") != "ok":
            raise TargetError(f"the relay refused a chat: {answer}")
        return answer["chat_id"]

    async def open_private_chat(self, user_id: str, other_id: str) -> int:
        return await self._declare([user_id, other_id])

    async def create_group(self, admin_id: str, member_ids: list[str]) -> int:
        return await self._declare([admin_id, *member_ids])

    async def upload_image(self, user_id: str, content: bytes) -> str:
        raise TargetError("the relay stores no images")

    async def history(self, user_id: str, chat_id: int, limit: int = 50) -> dict:
        raise TargetError("the relay keeps no history")
