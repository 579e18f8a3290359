"""The brief's daily mix, compressed in time: sends, views, images, reads, receipts.

The shares come from the figures of ``parley capacity``: per send, two history
views and two reads; four sends in five in a private chat, the rest in groups
of eight; one in ten with an image, uploaded once per sender and reused.
"""

from __future__ import annotations

import asyncio
import io
import random
import time
from pathlib import Path

from parley.bench.devices import BenchDevice
from parley.bench.tracker import percentiles_ms
from parley.bench.workloads import Context, connect_fleet, drive, holds, summary_line

VIEWS_IN_FLIGHT_LIMIT = 512
UPLOAD_CONCURRENCY = 4
DEFAULT_IMAGE = Path(__file__).resolve().parents[2] / "tests/data/images/coffee.webp"


def mix_shares() -> dict:
    """Per send: views, reads, and the shares of private chats and images."""
    from parley.capacity import Figures

    f = Figures()
    return {
        "views_per_send": f.views_per_user / f.messages_per_user,
        "reads_per_send": f.reads_per_user / f.messages_per_user,
        "private_share": f.private_chat_share,
        "group_members": max(3, round(f.group_members)),
        "image_share": f.image_message_share,
    }


class _Mix:
    """The chats of the mix, and the views and reads it causes."""

    def __init__(self, ctx: Context, devices: list[BenchDevice], shares: dict) -> None:
        self.ctx = ctx
        self.devices = devices
        self.shares = shares
        self.random = random.Random(ctx.options.seed)
        self.private: list[tuple[int, list[BenchDevice]]] = []
        self.groups: list[tuple[int, list[BenchDevice]]] = []
        self.images: dict[str, str] = {}
        self.view_ns: list[int] = []
        self.view_errors = 0
        self.views_skipped = 0
        self.reads = 0
        self.images_sent = 0
        self._views: set[asyncio.Task] = set()

    def plan(self) -> tuple[BenchDevice, int, int, list[str]]:
        shares = self.shares
        private = not self.groups or self.random.random() < shares["private_share"]
        chat_id, members = self.random.choice(self.private if private else self.groups)
        sender = self.random.choice(members)
        images = []
        if self.images and self.random.random() < shares["image_share"]:
            images = [self.images[sender.user_id]]
            self.images_sent += 1
        for _ in range(round(shares["views_per_send"])):
            self._view(self.random.choice(members).user_id, chat_id)
        return sender, chat_id, len(members) - 1, images

    def _view(self, user_id: str, chat_id: int) -> None:
        if len(self._views) >= VIEWS_IN_FLIGHT_LIMIT:
            self.views_skipped += 1
            return
        task = asyncio.create_task(self._timed_view(user_id, chat_id))
        self._views.add(task)
        task.add_done_callback(self._views.discard)

    async def _timed_view(self, user_id: str, chat_id: int) -> None:
        started = time.monotonic_ns()
        try:
            await self.ctx.target.history(user_id, chat_id)
        except Exception:  # noqa: BLE001 - counted, the mix goes on
            self.view_errors += 1
            return
        self.view_ns.append(time.monotonic_ns() - started)

    def on_message(self, device: BenchDevice, message: dict) -> None:
        """A recipient reads what arrived, as often as the mix says."""
        if message["sender_id"] == device.user_id:
            return
        members = len(self._members_of(message["chat_id"]))
        if self.random.random() < self.shares["reads_per_send"] / max(1, members - 1):
            device.read(message["chat_id"], message["seq"])
            self.reads += 1

    def _members_of(self, chat_id: int) -> list[BenchDevice]:
        return self._by_chat.get(chat_id, [])

    def index_chats(self) -> None:
        self._by_chat = {
            chat_id: members for chat_id, members in self.private + self.groups
        }

    async def finish_views(self, timeout_s: float) -> None:
        if self._views:
            await asyncio.wait(set(self._views), timeout=timeout_s)

    def figures(self, window_s: float) -> dict:
        return {
            "views": len(self.view_ns),
            "views_per_s": round(len(self.view_ns) / window_s, 1),
            "view_errors": self.view_errors,
            "views_skipped": self.views_skipped,
            "view_latency_ms": percentiles_ms(self.view_ns),
            "reads": self.reads,
            "reads_per_s": round(self.reads / window_s, 1),
            "images_sent": self.images_sent,
        }


async def run_mix(ctx: Context) -> dict:
    """Sends at ``--mix-rate`` with the mix's views, images, reads and receipts."""
    options = ctx.options
    shares = mix_shares()
    mix = await _setup(ctx, shares)
    fleet = await connect_fleet(ctx, mix.devices, "mix: connecting")
    try:
        for device in mix.devices:
            device.on_message = mix.on_message
        rate = options.mix_rate or options.rate
        run = await drive(ctx, f"{rate:,.0f} msg/s", fleet, mix.plan, rate)
        await mix.finish_views(options.drain_s)
        run["mix"] = mix.figures(run["throughput"]["window_s"])
        run["frames"] = fleet.frame_counts()
        run["held"], run["verdict"] = holds(run, "latency_ms", options.p99_limit_ms)
        ctx.progress.note(f"  {ctx.target.name} mix {summary_line(run, 'latency_ms')}")
    finally:
        await fleet.close()
    return {
        "workload": "mix",
        "parameters": {"users": len(mix.devices), "shares": shares},
        "headline": "latency_ms",
        "runs": [run],
    }


async def _setup(ctx: Context, shares: dict) -> _Mix:
    """Users in a ring of private chats and in groups; an image each, uploaded."""
    target = ctx.target
    count = max(shares["group_members"], ctx.options.users)
    users = [ctx.user("m", i) for i in range(count)]
    devices = [
        BenchDevice(user, "bench", target.token(user), target.ws_url(i))
        for i, user in enumerate(users)
    ]
    mix = _Mix(ctx, devices, shares)

    ring = [(i, (i + 1) % count) for i in range(count)]
    private_ids = await asyncio.gather(
        *(target.open_private_chat(users[a], users[b]) for a, b in ring)
    )
    mix.private = [
        (chat_id, [devices[a], devices[b]])
        for chat_id, (a, b) in zip(private_ids, ring, strict=True)
    ]

    size = shares["group_members"]
    blocks = [list(range(k, k + size)) for k in range(0, count - size + 1, size)]
    group_ids = await asyncio.gather(
        *(target.create_group(users[b[0]], [users[i] for i in b[1:]]) for b in blocks)
    )
    mix.groups = [
        (chat_id, [devices[i] for i in block])
        for chat_id, block in zip(group_ids, blocks, strict=True)
    ]

    for chat_id, members in mix.private + mix.groups:
        for device in members:
            device.chat_ids.add(chat_id)
    mix.index_chats()

    if shares["image_share"] > 0:
        mix.images = await _upload_images(ctx, users)
    return mix


async def _upload_images(ctx: Context, users: list[str]) -> dict[str, str]:
    content = _image_bytes(ctx.options.image_path)
    slots = asyncio.Semaphore(UPLOAD_CONCURRENCY)

    async def upload(user: str) -> tuple[str, str]:
        async with slots:
            return user, await ctx.target.upload_image(user, content)

    async with ctx.progress.status(f"{ctx.target.name} mix: uploading", lambda: ""):
        return dict(await asyncio.gather(*(upload(user) for user in users)))


def _image_bytes(path: str | None) -> bytes:
    """The image to send: the given file, a test photograph, or a drawn JPEG."""
    chosen = Path(path) if path else DEFAULT_IMAGE
    if chosen.exists():
        return chosen.read_bytes()

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (320, 240), "white")
    draw = ImageDraw.Draw(image)
    for x in range(0, 320, 16):
        draw.line([(x, 0), (320 - x, 240)], fill=(x % 256, 80, 160), width=3)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()
