"""The connection workloads: idle sockets' memory, and a reconnect storm's catch-up."""

from __future__ import annotations

import asyncio
import math
import time

from parley.bench.devices import BenchDevice, Fleet
from parley.bench.processes import UsageMeter, raise_open_files
from parley.bench.tracker import Tracker, histogram_ms, percentiles_ms
from parley.bench.workloads import Context, connect_fleet, message_text

IDLE_SETTLE_S = 2.0
SENDS_IN_FLIGHT_PER_SENDER = 4
SEND_POLL_S = 0.005
# How long one device of a storm may take from its socket to ``synced``.
STORM_SYNCED_TIMEOUT_S = 120.0
# Setting up stops when no send has been answered for this long.
SEND_STALL_S = 30.0


# -- idle ------------------------------------------------------------------------


async def run_idle(ctx: Context) -> dict:
    """N authenticated idle connections; the server's memory per connection."""
    runs = []
    warnings = []
    for count in ctx.options.connections:
        found = _open_files_warnings(ctx, count)
        for warning in found:
            ctx.progress.note(f"  warning: {warning}")
        warnings += found
        runs.append(await _idle_run(ctx, count))
    return {
        "workload": "idle",
        "parameters": {"connections": ctx.options.connections},
        "headline": "connect_latency_ms",
        "runs": runs,
        "warnings": warnings,
    }


def _open_files_warnings(ctx: Context, count: int) -> list[str]:
    """Raise the driver's open-files limit; say if it, or the server's, is short."""
    _, warning = raise_open_files(count)
    warnings = [warning] if warning else []
    limit = ctx.server.open_files_limit()
    if limit is not None and limit < count + 100:
        warnings.append(
            f"the server may open {limit} files; {count:,} connections need more"
        )
    return warnings


async def _idle_run(ctx: Context, count: int) -> dict:
    target = ctx.target
    devices = [
        BenchDevice(user, "bench", target.token(user), target.ws_url(i))
        for i, user in enumerate(ctx.user(f"i{count}x", i) for i in range(count))
    ]
    await ctx.server.settle(ctx.options.settle_s)
    rss_before = ctx.server.rss_bytes()

    started = time.monotonic()
    async with UsageMeter(ctx.server) as meter:
        fleet = await connect_fleet(ctx, devices, f"idle: {count:,} connections")
        connect_s = time.monotonic() - started
        await asyncio.sleep(IDLE_SETTLE_S)
        await ctx.server.settle(ctx.options.settle_s)
    rss_after = ctx.server.rss_bytes()
    open_at_end = sum(device.is_open for device in devices)
    await fleet.close()

    per_connection = (rss_after - rss_before) / count
    ctx.progress.note(
        f"  {target.name} idle {count:,}: "
        f"{per_connection / 1024:,.1f} KiB per connection"
    )
    return {
        "label": f"{count:,} connections",
        "connections": count,
        "open_at_end": open_at_end,
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "bytes_per_connection": round(per_connection, 1),
        "connect_s": round(connect_s, 3),
        "connects_per_s": round(count / connect_s, 1),
        "connect_latency_ms": _connect_latencies(devices),
        "histogram": histogram_ms(_synced_ns(devices)),
        "server": meter.usage.to_dict(),
    }


def _synced_ns(devices: list[BenchDevice]) -> list[int]:
    return [
        device.synced_ns - device.connected_ns
        for device in devices
        if device.synced_ns is not None
    ]


def _connect_latencies(devices: list[BenchDevice]) -> dict:
    """From opening the socket to ``synced``, per device."""
    return percentiles_ms(_synced_ns(devices))


# -- reconnect -------------------------------------------------------------------


async def run_reconnect(ctx: Context) -> dict:
    """D devices miss M messages each, then all reconnect with their cursor."""
    options = ctx.options
    warnings = _open_files_warnings(ctx, options.devices + 64)
    for warning in warnings:
        ctx.progress.note(f"  warning: {warning}")
    groups = await _reconnect_groups(ctx)
    fleet = Fleet(
        [device for _, members in groups for device in members], options.ack_interval_s
    )

    cursors = await _first_connection(ctx, fleet)
    tracker = Tracker(ctx.tag())
    await _send_missed(ctx, groups, tracker)

    fleet.use(tracker)
    await ctx.server.settle(options.settle_s)
    run = await _storm(ctx, fleet, cursors, tracker)
    await fleet.close()
    return {
        "workload": "reconnect",
        "parameters": {
            "devices": len(fleet.devices),
            "missed": options.missed,
            "group_size": options.reconnect_group_size,
        },
        "headline": "latency_ms",
        "runs": [run],
        "warnings": warnings,
    }


async def _reconnect_groups(
    ctx: Context,
) -> list[tuple[BenchDevice, list[BenchDevice]]]:
    """Groups of recipients, each with a sender who is not one of the D devices."""
    options, target = ctx.options, ctx.target
    size = max(1, min(options.reconnect_group_size, options.devices))
    count = math.ceil(options.devices / size)
    users = [ctx.user("r", i) for i in range(options.devices)]
    blocks = [users[k * size : (k + 1) * size] for k in range(count)]
    admins = [ctx.user("rs", k) for k in range(count)]
    chat_ids = await asyncio.gather(
        *(
            target.create_group(admin, block)
            for admin, block in zip(admins, blocks, strict=True)
        )
    )

    groups = []
    for k, (admin, block, chat_id) in enumerate(
        zip(admins, blocks, chat_ids, strict=True)
    ):
        sender = BenchDevice(admin, "bench", target.token(admin), target.ws_url(k))
        members = [
            BenchDevice(user, "bench", target.token(user), target.ws_url(k * size + j))
            for j, user in enumerate(block)
        ]
        for device in (sender, *members):
            device.chat_ids.add(chat_id)
        groups.append((sender, members))
    return groups


async def _first_connection(ctx: Context, fleet: Fleet) -> dict[str, int]:
    """Every device comes online once, learns its cursor, and goes offline."""
    connected = await connect_fleet(ctx, fleet.devices, "reconnect: first connection")
    await connected.close(ctx.options.connect_concurrency)
    await ctx.server.settle(ctx.options.settle_s)
    return {device.user_id: device.cursor for device in fleet.devices}


async def _send_missed(
    ctx: Context, groups: list[tuple[BenchDevice, list[BenchDevice]]], tracker: Tracker
) -> None:
    """While the devices are offline, each group's sender sends M messages."""
    senders = [sender for sender, _ in groups]
    sender_fleet = await connect_fleet(ctx, senders, "reconnect: senders connecting")
    sender_fleet.use(tracker)
    remaining = {sender: ctx.options.missed for sender in senders}
    written = {sender: 0 for sender in senders}
    recipients = {sender: len(members) for sender, members in groups}

    def describe() -> str:
        return f"confirmed {tracker.confirmed:,}/{tracker.sent:,} sends"

    progress_at = (time.monotonic(), 0)
    async with ctx.progress.status(f"{ctx.target.name} reconnect: sending", describe):
        while any(remaining.values()) or tracker.confirmed < tracker.sent:
            progress_at = _check_sending(senders, tracker, progress_at)
            for sender in senders:
                in_flight = written[sender] - sender.frames.get("sent", 0)
                while remaining[sender] and in_flight < SENDS_IN_FLIGHT_PER_SENDER:
                    chat_id = next(iter(sender.chat_ids))
                    index, client_id = tracker.new_message(chat_id, recipients[sender])
                    sender.send(chat_id, client_id, message_text(client_id), [])
                    remaining[sender] -= 1
                    written[sender] += 1
                    in_flight += 1
            await asyncio.sleep(SEND_POLL_S)
    await sender_fleet.close()


def _check_sending(
    senders: list[BenchDevice], tracker: Tracker, progress_at: tuple[float, int]
) -> tuple[float, int]:
    """Stop on a refusal, a closed sender, or no answer for SEND_STALL_S."""
    if tracker.refused:
        raise RuntimeError(f"sends refused while setting up: {tracker.refused}")
    closed = [sender for sender in senders if not sender.is_open]
    if closed:
        raise RuntimeError(
            f"{len(closed)} senders' connections closed while sending "
            f"({tracker.confirmed:,}/{tracker.sent:,} sends answered)"
        )
    now, confirmed = time.monotonic(), tracker.confirmed
    if confirmed > progress_at[1]:
        return now, confirmed
    if now - progress_at[0] > SEND_STALL_S:
        raise RuntimeError(
            f"no send answered for {SEND_STALL_S:g} s "
            f"({tracker.confirmed:,}/{tracker.sent:,} sends answered)"
        )
    return progress_at


async def _storm(
    ctx: Context, fleet: Fleet, cursors: dict[str, int], tracker: Tracker
) -> dict:
    """All devices reconnect at once with their cursors; time until all caught up."""
    options = ctx.options
    started_ns = time.monotonic_ns()

    def describe() -> str:
        synced = sum(device.synced_ns is not None for device in fleet.devices)
        return (
            f"synced {synced:,}/{len(fleet.devices):,}  "
            f"caught up {tracker.delivered:,}/{tracker.expected_total:,}"
        )

    async with (
        UsageMeter(ctx.server) as meter,
        ctx.progress.status(f"{ctx.target.name} reconnect storm", describe),
    ):
        await fleet.connect(
            options.connect_concurrency, cursors, timeout_s=STORM_SYNCED_TIMEOUT_S
        )
        deadline = time.monotonic() + options.drain_s
        while tracker.outstanding > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        finished_ns = time.monotonic_ns()
    fleet.start_acks()

    storm_s = (finished_ns - started_ns) / 1e9
    times_ns = [device.synced_ns - started_ns for device in fleet.devices]
    events = sum(device.caught_up for device in fleet.devices)
    messages = tracker.messages()
    messages["cursor_gaps"] = fleet.cursor_gaps()
    ctx.progress.note(
        f"  {ctx.target.name} reconnect: {len(fleet.devices):,} devices caught up "
        f"{events:,} events in {storm_s:.2f} s"
    )
    return {
        "label": f"{len(fleet.devices):,} devices × {options.missed} missed",
        "messages": messages,
        "latency_ms": percentiles_ms(times_ns),
        "latency_of": "reconnect start to each device's synced",
        "histogram": histogram_ms(times_ns),
        "catch_up_s": round(storm_s, 3),
        "catch_up_events": events,
        "catch_up_events_per_s": round(events / storm_s, 1),
        "throughput": {
            "deliveries_per_s": round(tracker.delivered / storm_s, 1),
            "window_s": round(storm_s, 3),
        },
        "server": meter.usage.to_dict(),
        "frames": fleet.frame_counts(),
    }
