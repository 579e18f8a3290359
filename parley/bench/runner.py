"""One bench run: find the server, start the relay, pin, run each workload, report."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import string
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from parley.bench import report as reports
from parley.bench.connections import run_idle, run_reconnect
from parley.bench.mix import run_mix
from parley.bench.processes import (
    Pinning,
    ProcessError,
    ServerProcesses,
    check_pinning_possible,
    find_server_pids,
    machine_info,
    utc_now,
)
from parley.bench.progress import Progress
from parley.bench.target import ParleyTarget, RelayTarget, check_secret
from parley.bench.workloads import Context, Options, run_group, run_private

WORKLOADS = {
    "idle": run_idle,
    "private": run_private,
    "group": run_group,
    "reconnect": run_reconnect,
    "mix": run_mix,
}
# Idle runs first, on a heap that earlier work has not left free space in.
ORDER = ["idle", "private", "group", "reconnect", "mix"]
RELAY_WORKLOADS = {"idle", "private", "group"}
RELAY_START_TIMEOUT_S = 10.0


@dataclass
class BenchRequest:
    urls: list[str]
    workloads: list[str]
    options: Options
    data_dir: Path
    jwt_secret: str
    server_pids: list[int] = field(default_factory=list)
    compare_relay: bool = False
    pin: bool = False
    quiet: bool = False
    max_run_s: float = 900.0
    command: str = ""


class RelayProcess:
    """The bare relay in a child process on a free loopback port."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> RelayProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "parley.bench.relay", "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + RELAY_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ProcessError("the relay exited at start")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return self
            time.sleep(0.05)
        self.stop()
        raise ProcessError("the relay did not start listening")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def new_run_id() -> str:
    """Six letters and digits: user names of one run never meet another's."""
    alphabet = string.ascii_lowercase + string.digits
    return "b" + "".join(secrets.choice(alphabet) for _ in range(6))


async def run_bench(request: BenchRequest) -> dict:
    """Run the requested workloads (and the relay's), and build the report."""
    from parley.config import Settings

    check_secret(request.data_dir, request.jwt_secret)
    settings = Settings(data_dir=request.data_dir, jwt_secret=request.jwt_secret)
    target = ParleyTarget(request.urls, settings)
    server = ServerProcesses(request.server_pids or find_server_pids(target.ports))
    relay = RelayProcess().start() if request.compare_relay else None
    relay_target = RelayTarget(relay.url) if relay else None
    relay_server = ServerProcesses([relay.process.pid]) if relay else None
    pinning = Pinning()
    run_id = new_run_id()

    try:
        if request.pin:
            _pin(pinning, server, relay_server)
        with Progress(enabled=not request.quiet) as progress:
            results = {}
            for name in [name for name in ORDER if name in request.workloads]:
                ctx = Context(target, server, request.options, run_id, progress)
                results[name] = await _run_one(name, ctx, request.max_run_s)
                if relay_target is not None and name in RELAY_WORKLOADS:
                    relay_ctx = Context(
                        relay_target,
                        relay_server,
                        request.options,
                        run_id + "r",
                        progress,
                    )
                    relay_result = await _run_one(name, relay_ctx, request.max_run_s)
                    results[name]["relay"] = relay_result
                    if "error" not in relay_result and "error" not in results[name]:
                        results[name]["ratio_to_relay"] = reports.relay_ratios(
                            results[name], relay_result
                        )
    finally:
        pinning.restore()
        await target.close()
        if relay_target is not None:
            await relay_target.close()
        if relay is not None:
            relay.stop()

    setup = {
        "urls": request.urls,
        "server_pids": server.pids,
        "relay": relay.url if relay else None,
        "pinned": request.pin,
        "run_id": run_id,
        "workloads": [name for name in ORDER if name in request.workloads],
        "options": asdict(request.options),
    }
    return reports.build_report(
        date=utc_now(),
        command=request.command,
        machine=machine_info(),
        setup=setup,
        workloads=results,
    )


def _pin(
    pinning: Pinning, server: ServerProcesses, relay: ServerProcesses | None
) -> None:
    check_pinning_possible()
    pinning.pin_server(server)
    if relay is not None:
        pinning.pin_server(relay)
    pinning.pin_driver()


async def _run_one(name: str, ctx: Context, max_run_s: float) -> dict:
    """One workload within its time bound; a failure is reported, not raised."""
    try:
        return await asyncio.wait_for(WORKLOADS[name](ctx), max_run_s)
    except TimeoutError:
        error = f"stopped after {max_run_s:g} s (--max-run-s)"
    except Exception as failure:  # noqa: BLE001 - reported in the results
        error = f"{type(failure).__name__}: {failure}"
    ctx.progress.note(f"  {ctx.target.name} {name} failed: {error}")
    return {"workload": name, "error": error}
