"""The server's processes as psutil sees them: CPU, memory, pinning; and the machine.

A server is every process listening on one of its ports, with all their
children (uvicorn may fork workers), or the pids given. CPU time counts every
thread of every process; pinning moves every thread, since SQLite runs on a
thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import resource
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import psutil

SAMPLE_INTERVAL_S = 0.25
SETTLE_CPU_PERCENT = 10.0
SETTLE_WINDOW_S = 0.5
FD_MARGIN = 256


class ProcessError(Exception):
    """The server's processes cannot be found or measured."""


def find_server_pids(ports: list[int]) -> list[int]:
    """The pids listening on these TCP ports on this machine."""
    wanted = set(ports)
    pids = {
        connection.pid
        for connection in psutil.net_connections(kind="tcp")
        if connection.status == psutil.CONN_LISTEN
        and connection.laddr
        and connection.laddr.port in wanted
        and connection.pid is not None
    }
    if not pids:
        raise ProcessError(
            f"no process of this user listens on port(s) {sorted(wanted)}; "
            "give --server-pid"
        )
    return sorted(pids)


class ServerProcesses:
    """A server's processes and their children, measured together."""

    def __init__(self, pids: list[int]) -> None:
        try:
            self._roots = [psutil.Process(pid) for pid in pids]
        except psutil.NoSuchProcess as error:
            raise ProcessError(f"no process {error.pid}") from None

    @property
    def processes(self) -> list[psutil.Process]:
        found = {process.pid: process for process in self._roots}
        for root in self._roots:
            with contextlib.suppress(psutil.Error):
                for child in root.children(recursive=True):
                    found.setdefault(child.pid, child)
        return list(found.values())

    @property
    def pids(self) -> list[int]:
        return sorted(process.pid for process in self.processes)

    def cpu_s(self) -> float:
        user_s, system_s = self.cpu_split_s()
        return user_s + system_s

    def cpu_split_s(self) -> tuple[float, float]:
        """User and system CPU seconds of every thread of every process."""
        user_s = system_s = 0.0
        for process in self.processes:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                user_s += times.user
                system_s += times.system
        return user_s, system_s

    def rss_bytes(self) -> int:
        total = 0
        for process in self.processes:
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        return total

    def open_files_limit(self) -> int | None:
        """The smallest soft RLIMIT_NOFILE among the processes."""
        limits = []
        for process in self.processes:
            with contextlib.suppress(psutil.Error, AttributeError):
                limits.append(process.rlimit(psutil.RLIMIT_NOFILE)[0])
        return min(limits) if limits else None

    async def settle(self, max_s: float = 30.0) -> float:
        """Wait until the server is nearly idle (or ``max_s``); returns the wait."""
        start = time.monotonic()
        while time.monotonic() - start < max_s:
            before = self.cpu_s()
            await asyncio.sleep(SETTLE_WINDOW_S)
            busy = (self.cpu_s() - before) / SETTLE_WINDOW_S * 100
            if busy < SETTLE_CPU_PERCENT:
                break
        return time.monotonic() - start


@dataclass
class Usage:
    """CPU and memory of the server (and the driver) over one measured window."""

    wall_s: float
    user_s: float
    system_s: float
    rss_start_bytes: int
    rss_peak_bytes: int
    rss_end_bytes: int
    driver_cpu_s: float
    machine_busy_s: float

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.system_s

    def to_dict(self) -> dict:
        wall_s = max(self.wall_s, 1e-9)
        others_s = max(0.0, self.machine_busy_s - self.cpu_s - self.driver_cpu_s)
        return {
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "cpu_user_s": round(self.user_s, 3),
            "cpu_system_s": round(self.system_s, 3),
            "cpu_percent": round(self.cpu_s / wall_s * 100, 1),
            "rss_start_bytes": self.rss_start_bytes,
            "rss_peak_bytes": self.rss_peak_bytes,
            "rss_end_bytes": self.rss_end_bytes,
            "driver_cpu_percent": round(self.driver_cpu_s / wall_s * 100, 1),
            # Everything else on the machine: noise the figures may carry.
            "others_cpu_percent": round(others_s / wall_s * 100, 1),
        }


class UsageMeter:
    """Measures a window: CPU seconds at both ends, RSS sampled for its peak."""

    def __init__(self, server: ServerProcesses) -> None:
        self._server = server
        self._driver = psutil.Process()
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> UsageMeter:
        self._start_s = time.monotonic()
        self._cpu_start_s = self._server.cpu_split_s()
        self._driver_start_s = _process_cpu_s(self._driver)
        self._machine_start_s = _machine_busy_s()
        self._rss_start = self._rss_peak = self._server.rss_bytes()
        self._task = asyncio.create_task(self._sample())
        self.usage: Usage | None = None
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        rss_end = self._server.rss_bytes()
        user_s, system_s = self._server.cpu_split_s()
        self.usage = Usage(
            wall_s=time.monotonic() - self._start_s,
            user_s=user_s - self._cpu_start_s[0],
            system_s=system_s - self._cpu_start_s[1],
            rss_start_bytes=self._rss_start,
            rss_peak_bytes=max(self._rss_peak, rss_end),
            rss_end_bytes=rss_end,
            driver_cpu_s=_process_cpu_s(self._driver) - self._driver_start_s,
            machine_busy_s=_machine_busy_s() - self._machine_start_s,
        )

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL_S)
            self._rss_peak = max(self._rss_peak, self._server.rss_bytes())


def _process_cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _machine_busy_s() -> float:
    """CPU seconds all cores spent running something, since boot."""
    times = psutil.cpu_times()
    busy = ("user", "nice", "system", "irq", "softirq")
    return sum(getattr(times, name, 0.0) for name in busy)


# -- pinning -----------------------------------------------------------------


class Pinning:
    """Servers on core 0, the driver on core 1; every thread, restored after."""

    SERVER_CORE = 0
    DRIVER_CORE = 1

    def __init__(self) -> None:
        self._saved: dict[int, set[int]] = {}

    def pin_server(self, server: ServerProcesses) -> None:
        for process in server.processes:
            with contextlib.suppress(psutil.Error):
                for thread in process.threads():
                    self._pin(thread.id, {self.SERVER_CORE})

    def pin_driver(self) -> None:
        for thread in psutil.Process().threads():
            self._pin(thread.id, {self.DRIVER_CORE})

    def _pin(self, thread_id: int, cores: set[int]) -> None:
        try:
            previous = os.sched_getaffinity(thread_id)
            os.sched_setaffinity(thread_id, cores)
        except (ProcessLookupError, PermissionError):
            return
        self._saved.setdefault(thread_id, previous)

    def restore(self) -> None:
        for thread_id, cores in self._saved.items():
            with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
                os.sched_setaffinity(thread_id, cores)
        self._saved.clear()


def check_pinning_possible() -> None:
    cores = os.sched_getaffinity(0)
    if not {Pinning.SERVER_CORE, Pinning.DRIVER_CORE} <= cores:
        raise ProcessError(
            f"--pin needs cores 0 and 1; this process may use {sorted(cores)}"
        )


# -- limits and the machine --------------------------------------------------


def raise_open_files(needed: int) -> tuple[int, str | None]:
    """Raise the driver's RLIMIT_NOFILE toward ``needed``; a warning if short."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed + FD_MARGIN
    if soft < wanted:
        new_soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
        soft = new_soft
    if soft < wanted:
        return soft, (
            f"the driver may open {soft} files but needs about {wanted}: "
            f"raise the hard limit (ulimit -Hn, now {hard})"
        )
    return soft, None


def machine_info() -> dict:
    memory = psutil.virtual_memory().total
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": memory,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": f"{platform.system()} {platform.release()}",
        "event_loop": _event_loop_name(),
    }


def machine_line(info: dict, pinned: bool) -> str:
    """One line naming the machine, for `parley capacity`."""
    memory_gib = info["memory_bytes"] / 2**30
    server = "server pinned to 1 core" if pinned else "server not pinned"
    return f"{info['cpu_model']}, {info['cores']} cores, {memory_gib:.1f} GiB; {server}"


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _event_loop_name() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    return f"uvloop {uvloop.__version__}"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
