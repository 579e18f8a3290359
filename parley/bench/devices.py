"""Simulated devices: one WebSocket each, speaking Parley's frames, counted.

A device answers nothing by itself but acknowledgements: a fleet acknowledges
each device's newest cursor every ``ack_interval_s``, as a phone would after
processing what it got. Message frames go to the phase's tracker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Iterable

import orjson

from parley.bench import wire
from parley.bench.tracker import Delivery, Tracker

CONNECT_TIMEOUT_S = 15.0
CLOSE_TIMEOUT_S = 10.0
ACK_TICK_S = 0.02


class DeviceError(Exception):
    """A device could not connect, or the server refused its hello."""


class BenchDevice:
    """One user's one device on one WebSocket."""

    def __init__(self, user_id: str, device_id: str, token: str, ws_url: str) -> None:
        self.user_id = user_id
        self.device_id = device_id
        self.token = token
        self.ws_url = ws_url
        self.chat_ids: set[int] = set()
        self.tracker: Tracker | None = None
        self.delivery = Delivery()
        self.on_message: Callable[[BenchDevice, dict], None] | None = None
        self.cursor: int | None = None
        self.acked = 0
        self.frames: dict[str, int] = {}
        self.cursor_gaps = 0
        self.caught_up = 0
        self.connected_ns: int | None = None
        self.synced_ns: int | None = None
        self.refusal: str | None = None
        self._wire: wire.WireClient | None = None
        self._welcome: asyncio.Future[dict] | None = None
        self._synced: asyncio.Future[int] | None = None
        self._replies: dict[str, asyncio.Future[dict]] = {}

    # -- the connection ------------------------------------------------------

    async def connect(
        self,
        cursor: int | None = None,
        *,
        wait_synced: bool = True,
        timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        """Open the socket, say hello, and wait for welcome (and synced)."""
        loop = asyncio.get_running_loop()
        self._welcome = loop.create_future()
        self._synced = loop.create_future()
        self.connected_ns = time.monotonic_ns()
        self.synced_ns = None
        self.caught_up = 0

        try:
            self._wire = await wire.connect(
                self.ws_url, self._on_text, CONNECT_TIMEOUT_S
            )
            hello: dict = {"type": "hello", "token": self.token}
            if cursor is not None:
                hello["cursor"] = cursor
            self._wire.send_text(orjson.dumps(hello))
            async with asyncio.timeout(timeout_s):
                welcome = await asyncio.shield(self._welcome)
                if wait_synced:
                    await asyncio.shield(self._synced)
        except (OSError, TimeoutError, wire.HandshakeError) as error:
            self.abort()
            raise DeviceError(
                f"{self.user_id}: {type(error).__name__} {error}"
            ) from None
        # The server starts after the welcome's cursor: it needs no ack up to it.
        self.acked = max(self.acked, welcome["cursor"])

    @property
    def is_open(self) -> bool:
        return self._wire is not None and self._wire.is_open

    @property
    def synced(self) -> asyncio.Future[int] | None:
        return self._synced

    async def close(self) -> None:
        if self._wire is None:
            return
        self._wire.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._wire.closed), CLOSE_TIMEOUT_S)
        self._wire.abort()

    def abort(self) -> None:
        if self._wire is not None:
            self._wire.abort()

    # -- commands ------------------------------------------------------------

    def send(self, chat_id: int, client_id: str, text: str, images: list[str]) -> None:
        frame = {
            "type": "send",
            "ref": client_id,
            "chat_id": chat_id,
            "client_id": client_id,
            "text": text,
            "images": images,
        }
        self._wire.send_text(orjson.dumps(frame))

    def read(self, chat_id: int, seq: int) -> None:
        self._wire.send_text(
            orjson.dumps(
                {"type": "read", "ref": "read", "chat_id": chat_id, "seq": seq}
            )
        )

    def ack(self) -> None:
        """Acknowledge everything received so far, if there is anything new."""
        if self.cursor is not None and self.cursor > self.acked and self.is_open:
            self.acked = self.cursor
            self._wire.send_text(b'{"type":"ack","cursor":%d}' % self.cursor)

    async def request(self, frame: dict, timeout_s: float = 10.0) -> dict:
        """Send a frame with a ``ref`` and wait for the answer that echoes it."""
        ref = f"q{len(self._replies)}-{time.monotonic_ns()}"
        future = asyncio.get_running_loop().create_future()
        self._replies[ref] = future
        self._wire.send_text(orjson.dumps({**frame, "ref": ref}))
        try:
            return await asyncio.wait_for(future, timeout_s)
        finally:
            self._replies.pop(ref, None)

    # -- frames in -------------------------------------------------------------

    def _on_text(self, payload: bytes) -> None:
        frame = orjson.loads(payload)
        if frame.get("type") == "events":
            self.frames["events"] = self.frames.get("events", 0) + 1
            for event in frame["events"]:
                self._on_frame(event)
        else:
            self._on_frame(frame)

    def _on_frame(self, frame: dict) -> None:
        kind = frame.get("type")
        self.frames[kind] = self.frames.get(kind, 0) + 1

        cursor = frame.get("cursor")
        if cursor is not None and kind not in ("welcome", "synced"):
            self._advance(cursor)

        if kind == "message":
            self._on_message_frame(frame)
        elif kind == "sent":
            if self.tracker is not None:
                self.tracker.on_sent(frame["message"]["client_id"])
        elif kind == "error":
            self._on_error(frame)
        elif kind == "welcome":
            self.cursor = frame["cursor"]
            if not self._welcome.done():
                self._welcome.set_result(frame)
        elif kind == "synced":
            self.synced_ns = time.monotonic_ns()
            if not self._synced.done():
                self._synced.set_result(frame["cursor"])
        else:
            self._answer(frame)

    def _advance(self, cursor: int) -> None:
        if self.cursor is not None and cursor != self.cursor + 1:
            self.cursor_gaps += 1
        self.cursor = max(self.cursor or 0, cursor)
        if self.synced_ns is None:
            self.caught_up += 1

    def _on_message_frame(self, frame: dict) -> None:
        message = frame["message"]
        if self.on_message is not None:
            self.on_message(self, message)
        if message["sender_id"] == self.user_id or self.tracker is None:
            return
        chat_ok = message["chat_id"] in self.chat_ids
        self.tracker.on_message(self.delivery, chat_ok, message["client_id"])

    def _on_error(self, frame: dict) -> None:
        code = frame.get("code", "unknown")
        if self._welcome is not None and not self._welcome.done():
            self.refusal = code
            self._welcome.set_exception(
                DeviceError(f"{self.user_id}: hello refused: {code}")
            )
            return
        if self._answer(frame):
            return
        if self.tracker is not None:
            self.tracker.on_refused(frame.get("ref"), code)

    def _answer(self, frame: dict) -> bool:
        future = self._replies.get(frame.get("ref"))
        if future is None or future.done():
            return False
        future.set_result(frame)
        return True


class Fleet:
    """Many devices: connected with bounded concurrency, acknowledged together."""

    def __init__(self, devices: Iterable[BenchDevice], ack_interval_s: float) -> None:
        self.devices = list(devices)
        self.ack_interval_s = ack_interval_s
        self.failures: list[str] = []
        self._acks: asyncio.Task | None = None

    async def connect(
        self,
        concurrency: int,
        cursors: dict[str, int] | None = None,
        progress: Callable[[int], None] | None = None,
        timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        """Connect every device; raises DeviceError if any could not."""
        slots = asyncio.Semaphore(concurrency)
        done = 0

        async def one(device: BenchDevice) -> None:
            nonlocal done
            async with slots:
                cursor = None if cursors is None else cursors.get(device.user_id)
                try:
                    await device.connect(cursor, timeout_s=timeout_s)
                except DeviceError as error:
                    self.failures.append(str(error))
            done += 1
            if progress is not None:
                progress(done)

        await asyncio.gather(*(one(device) for device in self.devices))
        if self.failures:
            raise DeviceError(
                f"{len(self.failures)} of {len(self.devices)} devices did not connect; "
                f"first: {self.failures[0]}"
            )

    def start_acks(self) -> None:
        if self._acks is None:
            self._acks = asyncio.create_task(self._ack_loop())

    async def _ack_loop(self) -> None:
        """Each device acks once per interval, the devices spread over it.

        Phones do not acknowledge in step: a burst of every device's ack at
        one instant would stall the server in a way no real fleet does.
        """
        slices = max(1, round(self.ack_interval_s / ACK_TICK_S))
        for tick in itertools.count():
            await asyncio.sleep(self.ack_interval_s / slices)
            for device in self.devices[tick % slices :: slices]:
                device.ack()

    def use(self, tracker: Tracker | None) -> None:
        for device in self.devices:
            device.tracker = tracker
            device.delivery = Delivery()

    async def close(self, concurrency: int = 500) -> None:
        if self._acks is not None:
            self._acks.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._acks
            self._acks = None
        slots = asyncio.Semaphore(concurrency)

        async def one(device: BenchDevice) -> None:
            async with slots:
                await device.close()

        await asyncio.gather(*(one(device) for device in self.devices))

    def cursor_gaps(self) -> int:
        return sum(device.cursor_gaps for device in self.devices)

    def frame_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for device in self.devices:
            for kind, count in device.frames.items():
                counts[kind] = counts.get(kind, 0) + count
        return counts
