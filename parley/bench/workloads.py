"""The messaging workloads, private and group, and the phase they share.

A phase sends at a fixed rate for a while (an open loop: frames go out on
schedule whether or not the server keeps up), then waits for every recipient
to have every message, and measures the server over that window. Step mode
repeats phases at rising rates until one fails to hold.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from parley.bench.devices import BenchDevice, Fleet
from parley.bench.processes import ServerProcesses, UsageMeter
from parley.bench.progress import Progress
from parley.bench.tracker import Tracker, histogram_ms, percentiles_ms

SEND_TICK_S = 0.001
DRAIN_POLL_S = 0.02
# A phase holds its rate only if the driver itself kept up with it.
DRIVER_KEPT_UP_SHARE = 0.95
# Above this share of its core, the driver's own delays show in the latency.
DRIVER_BUSY_PERCENT = 90.0
# Fewer sends than this say nothing of the rate the driver kept.
MIN_SENDS_FOR_RATE = 10
# A group phase sends at least this many messages, whatever the rate asked.
MIN_GROUP_MESSAGES = 10
# Devices of a setup may wait this long for a server busy with their presence.
SETUP_CONNECT_TIMEOUT_S = 120.0
TEXT_BYTES = 80


@dataclass
class Options:
    """Every workload parameter, as the command line gave them."""

    duration_s: float = 5.0
    rate: float = 200.0
    mix_rate: float | None = None
    step: bool = False
    step_factor: float = 1.5
    max_steps: int = 10
    p99_limit_ms: float = 100.0
    users: int = 40
    group_sizes: list[int] = field(default_factory=lambda: [10, 100])
    group_rate: float = 2000.0
    connections: list[int] = field(default_factory=lambda: [1000])
    devices: int = 200
    missed: int = 100
    reconnect_group_size: int = 50
    ack_interval_s: float = 1.0
    drain_s: float = 10.0
    connect_concurrency: int = 200
    settle_s: float = 30.0
    seed: int = 1
    image_path: str | None = None


@dataclass
class Context:
    """What a workload runs against, and with."""

    target: object
    server: ServerProcesses
    options: Options
    run_id: str
    progress: Progress
    phases: itertools.count = field(default_factory=lambda: itertools.count(1))

    def tag(self) -> str:
        """A fresh client-id prefix, so late frames of a phase are told apart."""
        return f"{self.run_id}{next(self.phases)}"

    def user(self, kind: str, index: int) -> str:
        return f"{self.run_id}-{kind}{index}"


# A plan names the next send: its device, chat, recipient count and images.
Plan = Callable[[], tuple[BenchDevice, int, int, list[str]]]


# -- one phase -----------------------------------------------------------------


async def drive(
    ctx: Context,
    label: str,
    fleet: Fleet,
    plan: Plan,
    rate_per_s: float,
    extra: Callable[[], dict] | None = None,
) -> dict:
    """Send at ``rate_per_s`` for the duration, drain, and measure the window."""
    tracker = Tracker(ctx.tag())
    fleet.use(tracker)
    await ctx.server.settle(ctx.options.settle_s)

    def describe() -> str:
        return (
            f"sent {tracker.sent:,}  confirmed {tracker.confirmed:,}  "
            f"delivered {tracker.delivered:,}/{tracker.expected_total:,}  "
            f"doubled {tracker.doubled}"
        )

    async with (
        UsageMeter(ctx.server) as meter,
        ctx.progress.status(f"{ctx.target.name} {label}", describe),
    ):
        await send_at_rate(tracker, plan, rate_per_s, ctx.options.duration_s)
        await drain(tracker, ctx.options.drain_s)

    run = message_run(label, tracker, meter.usage.to_dict(), fleet)
    run["throughput"]["offered_sends_per_s"] = rate_per_s
    if extra is not None:
        run.update(extra())
    return run


async def send_at_rate(
    tracker: Tracker, plan: Plan, rate_per_s: float, duration_s: float
) -> None:
    """Write ``rate × duration`` send frames on schedule, in 1 ms ticks."""
    total = max(1, round(rate_per_s * duration_s))
    start = time.monotonic()
    sent = 0
    while sent < total:
        due = min(total, int((time.monotonic() - start) * rate_per_s) + 1)
        while sent < due:
            device, chat_id, recipients, images = plan()
            index, client_id = tracker.new_message(chat_id, recipients)
            device.send(chat_id, client_id, message_text(client_id), images)
            sent += 1
        await asyncio.sleep(SEND_TICK_S)


async def drain(tracker: Tracker, drain_s: float) -> None:
    """Wait until every recipient has everything and every send is answered."""
    deadline = time.monotonic() + drain_s
    while time.monotonic() < deadline:
        answered = tracker.confirmed + sum(tracker.refused.values())
        if tracker.outstanding <= 0 and answered >= tracker.sent:
            return
        await asyncio.sleep(DRAIN_POLL_S)


def message_text(client_id: str) -> str:
    """About the brief's average text: 80 bytes, unique to the message."""
    head = f"bench {client_id} "
    return head + "x" * max(0, TEXT_BYTES - len(head))


def message_run(label: str, tracker: Tracker, server: dict, fleet: Fleet) -> dict:
    """The figures of one phase, in the shape every messaging run shares."""
    window_s = tracker.active_window_s()
    messages = tracker.messages()
    messages["cursor_gaps"] = fleet.cursor_gaps()
    sends_per_s = (
        (tracker.sent - 1) / tracker.send_window_s() if tracker.sent > 1 else 0.0
    )
    cpu_s = max(server["cpu_s"], 1e-9)
    server = {
        **server,
        "cpu_us_per_send": round(server["cpu_s"] / max(1, tracker.confirmed) * 1e6, 1),
        "cpu_us_per_delivery": round(
            server["cpu_s"] / max(1, tracker.delivered) * 1e6, 2
        ),
        "sends_per_cpu_s": round(tracker.confirmed / cpu_s, 1),
        "deliveries_per_cpu_s": round(tracker.delivered / cpu_s, 1),
    }
    return {
        "label": label,
        "messages": messages,
        "latency_ms": percentiles_ms(tracker.latencies_ns),
        "last_recipient_latency_ms": percentiles_ms(tracker.last_latencies_ns),
        "sent_latency_ms": percentiles_ms(tracker.sent_latencies_ns),
        "histogram": histogram_ms(tracker.latencies_ns),
        "throughput": {
            "sends_per_s": round(sends_per_s, 1),
            "confirmed_sends_per_s": round(tracker.confirmed / window_s, 1),
            "deliveries_per_s": round(tracker.delivered / window_s, 1),
            "window_s": round(window_s, 3),
        },
        "server": server,
        "frames": fleet.frame_counts(),
    }


def holds(run: dict, headline: str, limit_ms: float) -> tuple[bool, str]:
    """Whether a run held its rate, and why not, naming a busy driver."""
    held, why = _holds(run, headline, limit_ms)
    driver_percent = run["server"]["driver_cpu_percent"]
    if driver_percent >= DRIVER_BUSY_PERCENT:
        why += f" (driver CPU {driver_percent:.0f}%: the driver may be the limit)"
    return held, why


def _holds(run: dict, headline: str, limit_ms: float) -> tuple[bool, str]:
    messages = run["messages"]
    for problem in ("lost", "doubled", "refused", "unexpected", "cursor_gaps"):
        if messages[problem]:
            return False, f"{messages[problem]} {problem.replace('_', ' ')}"
    p99 = run[headline]["p99"]
    if p99 is None or p99 > limit_ms:
        return False, f"p99 {p99:.1f} ms > {limit_ms:g} ms" if p99 else "no deliveries"
    offered = run["throughput"]["offered_sends_per_s"]
    enough = run["messages"]["sent"] >= MIN_SENDS_FOR_RATE
    if enough and run["throughput"]["sends_per_s"] < DRIVER_KEPT_UP_SHARE * offered:
        return False, "the driver could not send at the offered rate"
    return True, "held"


async def step_up(
    ctx: Context,
    start_rate: float,
    run_at: Callable[[float], object],
    headline: str,
) -> tuple[list[dict], dict | None]:
    """Raise the rate by ``step_factor`` until a run fails to hold; bounded in steps.

    A step that fails on latency alone is run once more before it counts: on
    a shared machine, one stall of another process can fail a short step.
    """
    options = ctx.options
    runs: list[dict] = []
    best = None
    rate = start_rate
    for _ in range(options.max_steps):
        run = await _judged(ctx, run_at, rate, headline)
        if not run["held"] and run["verdict"].startswith("p99"):
            runs.append(run)
            run = await _judged(ctx, run_at, rate, headline, again=True)
        runs.append(run)
        if not run["held"]:
            break
        best = run
        rate *= options.step_factor
    return runs, best


async def _judged(
    ctx: Context,
    run_at: Callable[[float], object],
    rate: float,
    headline: str,
    again: bool = False,
) -> dict:
    """One step, with its verdict, shown as it ends."""
    run = await run_at(rate)
    if again:
        run["label"] += " (again)"
    run["held"], run["verdict"] = holds(run, headline, ctx.options.p99_limit_ms)
    line = summary_line(run, headline)
    ctx.progress.note(f"  {ctx.target.name} {run['label']}: {line}")
    return run


def summary_line(run: dict, headline: str) -> str:
    latency = run[headline]
    p99 = f"{latency['p99']:.1f}" if latency["p99"] is not None else "–"
    return (
        f"{run['throughput']['deliveries_per_s']:,.0f} deliveries/s, p99 {p99} ms, "
        f"CPU {run['server']['cpu_percent']}% — {run.get('verdict', 'done')}"
    )


# -- private ---------------------------------------------------------------------


async def run_private(ctx: Context) -> dict:
    """1:1 chats at a fixed rate, or stepping the rate up until p99 > the limit."""
    options = ctx.options
    fleet, pairs = await _private_fleet(ctx, max(2, options.users // 2 * 2))
    try:
        senders = itertools.cycle(pairs)

        def plan() -> tuple[BenchDevice, int, int, list[str]]:
            device, chat_id = next(senders)
            return device, chat_id, 1, []

        async def run_at(rate: float) -> dict:
            run = await drive(ctx, f"{rate:,.0f} msg/s", fleet, plan, rate)
            run["rate"] = rate
            return run

        if options.step:
            runs, best = await step_up(ctx, options.rate, run_at, "latency_ms")
        else:
            runs = [await run_at(options.rate)]
            best = runs[0]
            best["held"], best["verdict"] = holds(
                best, "latency_ms", options.p99_limit_ms
            )
            ctx.progress.note(
                f"  {ctx.target.name} private {summary_line(best, 'latency_ms')}"
            )
    finally:
        await fleet.close()

    return {
        "workload": "private",
        "parameters": {"users": len(fleet.devices), "step": options.step},
        "headline": "latency_ms",
        "runs": runs,
        "highest_rate_held": best["rate"] if best and best["held"] else None,
    }


async def _private_fleet(
    ctx: Context, user_count: int
) -> tuple[Fleet, list[tuple[BenchDevice, int]]]:
    """Users in pairs, each pair a private chat; both sides send to the other."""
    target = ctx.target
    users = [ctx.user("p", i) for i in range(user_count)]
    pair_users = [(users[i], users[i + 1]) for i in range(0, user_count, 2)]
    chat_ids = await asyncio.gather(
        *(target.open_private_chat(a, b) for a, b in pair_users)
    )

    devices = [
        BenchDevice(user, "bench", target.token(user), target.ws_url(i))
        for i, user in enumerate(users)
    ]
    senders = []
    for pair, chat_id in enumerate(chat_ids):
        for device in devices[2 * pair : 2 * pair + 2]:
            device.chat_ids.add(chat_id)
            senders.append((device, chat_id))

    fleet = await connect_fleet(ctx, devices, "private: connecting")
    return fleet, senders


async def connect_fleet(
    ctx: Context,
    devices: list[BenchDevice],
    label: str,
    cursors: dict[str, int] | None = None,
) -> Fleet:
    """Connect devices with bounded concurrency and start their acknowledgements."""
    fleet = Fleet(devices, ctx.options.ack_interval_s)
    done = [0]

    def count(connected: int) -> None:
        done[0] = connected

    async with ctx.progress.status(
        f"{ctx.target.name} {label}", lambda: f"{done[0]:,}/{len(devices):,} devices"
    ):
        try:
            await fleet.connect(
                ctx.options.connect_concurrency,
                cursors,
                count,
                timeout_s=SETUP_CONNECT_TIMEOUT_S,
            )
        except BaseException:
            await fleet.close()
            raise
    fleet.start_acks()
    return fleet


# -- group -----------------------------------------------------------------------


async def run_group(ctx: Context) -> dict:
    """Fan-out in groups of each size; latency to the last recipient of each message."""
    options = ctx.options
    runs: list[dict] = []
    best_by_size: dict[str, float | None] = {}
    for size in options.group_sizes:
        size_runs, best = await _group_size(ctx, size)
        runs.extend(size_runs)
        held = best is not None and best["held"]
        best_by_size[str(size)] = best["deliveries_rate"] if held else None

    return {
        "workload": "group",
        "parameters": {"group_sizes": options.group_sizes, "step": options.step},
        "headline": "last_recipient_latency_ms",
        "runs": runs,
        "highest_deliveries_rate_held": best_by_size,
    }


async def _group_size(ctx: Context, size: int) -> tuple[list[dict], dict | None]:
    options = ctx.options
    fleet, chat_id = await _group_fleet(ctx, size)
    try:
        senders = itertools.cycle(fleet.devices)

        def plan() -> tuple[BenchDevice, int, int, list[str]]:
            return next(senders), chat_id, size - 1, []

        async def run_at(deliveries_rate: float) -> dict:
            label = f"{size} members, {deliveries_rate:,.0f} deliveries/s"
            rate = deliveries_rate / (size - 1)
            run = await drive(ctx, label, fleet, plan, rate)
            run["group_size"], run["deliveries_rate"] = size, deliveries_rate
            return run

        headline = "last_recipient_latency_ms"
        floor = (size - 1) * MIN_GROUP_MESSAGES / options.duration_s
        start_rate = max(options.group_rate, floor)
        if options.step:
            return await step_up(ctx, start_rate, run_at, headline)
        run = await run_at(start_rate)
        run["held"], run["verdict"] = holds(run, headline, options.p99_limit_ms)
        ctx.progress.note(
            f"  {ctx.target.name} {run['label']}: {summary_line(run, headline)}"
        )
        return [run], run
    finally:
        await fleet.close()


async def _group_fleet(ctx: Context, size: int) -> tuple[Fleet, int]:
    target = ctx.target
    users = [ctx.user(f"g{size}x", i) for i in range(size)]
    chat_id = await target.create_group(users[0], users[1:])
    devices = [
        BenchDevice(user, "bench", target.token(user), target.ws_url(i))
        for i, user in enumerate(users)
    ]
    for device in devices:
        device.chat_ids.add(chat_id)
    fleet = await connect_fleet(ctx, devices, f"group of {size}: connecting")
    return fleet, chat_id
