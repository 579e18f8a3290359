"""The ``parley bench`` command: its options, and what it prints and writes."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click

from parley.bench.relay import relay

WORKLOAD_NAMES = ["private", "group", "idle", "reconnect", "mix"]


def _counts(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    try:
        counts = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter("a comma-separated list of whole numbers") from None
    if not counts or min(counts) < 1:
        raise click.BadParameter("give at least one number, each 1 or more")
    return counts


def _group_sizes(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    sizes = _counts(ctx, param, value)
    if min(sizes) < 2:
        raise click.BadParameter("a group has at least 2 members")
    return sizes


@click.group(invoke_without_command=True)
@click.option(
    "--url",
    "urls",
    multiple=True,
    default=["http://127.0.0.1:8080"],
    show_default=True,
    help="A node of the running Parley, on this machine; repeat for a cluster.",
)
@click.option(
    "--workload",
    "workloads",
    multiple=True,
    type=click.Choice([*WORKLOAD_NAMES, "all"]),
    default=["all"],
    show_default=True,
    help="What to run; repeatable.",
)
@click.option(
    "--duration-s",
    type=click.FloatRange(min=0.1, max=600),
    default=5.0,
    show_default=True,
    help="Seconds of sending per phase.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0.1, max=1_000_000),
    default=200.0,
    show_default=True,
    help="Messages/s (private, mix; the first step).",
)
@click.option(
    "--mix-rate",
    type=click.FloatRange(min=0.1, max=1_000_000),
    help="Messages/s of the mix [--rate].",
)
@click.option(
    "--step/--no-step",
    default=False,
    help="Raise the rate step by step until p99 or integrity fails.",
)
@click.option(
    "--step-factor",
    type=click.FloatRange(min=1.05, max=10),
    default=1.5,
    show_default=True,
    help="Each step's rate over the last one's.",
)
@click.option("--max-steps", type=click.IntRange(1, 40), default=10, show_default=True)
@click.option(
    "--p99-limit-ms",
    type=click.FloatRange(min=0.1),
    default=100.0,
    show_default=True,
    help="A step holds while p99 stays at or under this.",
)
@click.option(
    "--users",
    type=click.IntRange(2, 100_000),
    default=40,
    show_default=True,
    help="Simulated users of private (in pairs) and mix.",
)
@click.option(
    "--group-sizes",
    default="10,100",
    show_default=True,
    callback=_group_sizes,
    help="Members per group, comma-separated.",
)
@click.option(
    "--group-rate",
    type=click.FloatRange(min=1, max=10_000_000),
    default=2000.0,
    show_default=True,
    help="Deliveries/s per group size (the first step).",
)
@click.option(
    "--connections",
    default="1000",
    show_default=True,
    callback=_counts,
    help="Idle connections, comma-separated (e.g. 1000,10000).",
)
@click.option(
    "--devices",
    type=click.IntRange(1, 200_000),
    default=200,
    show_default=True,
    help="Devices of the reconnect storm.",
)
@click.option(
    "--missed",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="Messages each storm device missed.",
)
@click.option(
    "--reconnect-group-size",
    type=click.IntRange(1, 1000),
    default=50,
    show_default=True,
    help="Storm devices share groups of this size.",
)
@click.option(
    "--ack-interval-ms",
    type=click.FloatRange(min=10, max=60_000),
    default=1000.0,
    show_default=True,
    help="Each device acknowledges its newest cursor this often.",
)
@click.option(
    "--drain-s",
    type=click.FloatRange(min=0.1, max=600),
    default=10.0,
    show_default=True,
    help="Wait this long after sending for stragglers.",
)
@click.option(
    "--connect-concurrency",
    type=click.IntRange(1, 10_000),
    default=200,
    show_default=True,
    help="WebSocket handshakes in flight at once.",
)
@click.option(
    "--max-run-s",
    type=click.FloatRange(min=1, max=7200),
    default=900.0,
    show_default=True,
    help="Each workload stops after this, whatever happens.",
)
@click.option(
    "--image",
    "image_path",
    type=click.Path(exists=True, dir_okay=False),
    help="Image the mix attaches [tests/data/images/coffee.webp].",
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("data"),
    show_default=True,
    help="The server's data directory, for its jwt-secret.",
)
@click.option(
    "--jwt-secret",
    envvar="PARLEY_JWT_SECRET",
    default="",
    help="The server's HS256 secret [PARLEY_JWT_SECRET].",
)
@click.option(
    "--server-pid",
    "server_pids",
    type=int,
    multiple=True,
    help="A server process to measure (default: those listening on --url).",
)
@click.option(
    "--compare-relay",
    is_flag=True,
    help="Also run private, group and idle against a bare relay.",
)
@click.option(
    "--pin",
    is_flag=True,
    help="Pin the server(s) and relay to core 0, the driver to core 1.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every figure here.",
)
@click.option(
    "--capacity-json",
    "capacity_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the per-node figures that `parley capacity --bench` reads.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write latency histograms and percentiles as a PNG.",
)
@click.option("--quiet", is_flag=True, help="No live progress on stderr.")
@click.pass_context
def bench(ctx: click.Context, **values: object) -> None:
    """Drive a running Parley with simulated devices over WebSockets, and report.

    Workloads: private (1:1 chats), group (fan-out), idle (memory per
    connection), reconnect (a storm of devices catching up), mix (the daily
    mix). Every run is bounded in messages and time; only servers on loopback
    addresses are loaded.
    """
    if ctx.invoked_subcommand is not None:
        return
    from parley.bench.target import TargetError

    request = _request(values, _command_line(ctx))
    try:
        report = _run(request)
    except TargetError as error:
        raise click.UsageError(str(error)) from None
    _write(report, values)


bench.add_command(relay)


def _command_line(ctx: click.Context) -> str:
    """The command as given, rebuilt from its options, with the secret hidden."""
    parts = ctx.command_path.split()
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source is not click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        if param.is_flag:
            parts.append(param.opts[0] if value else param.secondary_opts[0])
            continue
        values = value if param.multiple else [value]
        for one in values:
            if isinstance(one, list):
                one = ",".join(str(item) for item in one)
            shown = "<secret>" if param.name == "jwt_secret" else str(one)
            parts += [param.opts[0], shown]
    return shlex.join(parts)


def _request(values: dict, command: str):  # noqa: ANN202
    from parley.bench.runner import BenchRequest
    from parley.bench.target import TargetError, check_loopback
    from parley.bench.workloads import Options

    workloads = set(values["workloads"])
    names = WORKLOAD_NAMES if "all" in workloads else sorted(workloads)
    for url in values["urls"]:
        try:
            check_loopback(url)
        except TargetError as error:
            raise click.BadParameter(str(error), param_hint="--url") from None

    options = Options(
        duration_s=values["duration_s"],
        rate=values["rate"],
        mix_rate=values["mix_rate"],
        step=values["step"],
        step_factor=values["step_factor"],
        max_steps=values["max_steps"],
        p99_limit_ms=values["p99_limit_ms"],
        users=values["users"],
        group_sizes=values["group_sizes"],
        group_rate=values["group_rate"],
        connections=values["connections"],
        devices=values["devices"],
        missed=values["missed"],
        reconnect_group_size=values["reconnect_group_size"],
        ack_interval_s=values["ack_interval_ms"] / 1000,
        drain_s=values["drain_s"],
        connect_concurrency=values["connect_concurrency"],
        seed=values["seed"],
        image_path=values["image_path"],
    )
    return BenchRequest(
        urls=list(values["urls"]),
        workloads=list(names),
        options=options,
        data_dir=values["data_dir"],
        jwt_secret=values["jwt_secret"],
        server_pids=list(values["server_pids"]),
        compare_relay=values["compare_relay"],
        pin=values["pin"],
        quiet=values["quiet"],
        max_run_s=values["max_run_s"],
        command=command,
    )


def _run(request) -> dict:  # noqa: ANN001
    from parley.bench.processes import ProcessError
    from parley.bench.relay import start_loop
    from parley.bench.runner import run_bench

    outcome: dict = {}

    async def main() -> None:
        outcome["report"] = await run_bench(request)

    try:
        start_loop(main())
    except ProcessError as error:
        raise click.ClickException(str(error)) from None
    return outcome["report"]


def _write(report: dict, values: dict) -> None:
    from parley.bench import report as reports
    from parley.bench.processes import machine_line

    click.echo(reports.table(report))
    ratios = reports.ratio_table(report)
    if ratios:
        click.echo("\nParley as a multiple of the bare relay:\n\n" + ratios)
    click.echo("\n" + reports.goals_table(report))

    if values["json_path"]:
        values["json_path"].write_text(json.dumps(report, indent=1) + "\n")
    if values["capacity_path"]:
        document = reports.capacity_document(
            report, machine_line(report["machine"], report["setup"]["pinned"])
        )
        if document is None:
            raise click.ClickException(
                "--capacity-json needs all four per-node figures: run private, "
                "group, idle and reconnect"
            )
        values["capacity_path"].write_text(json.dumps(document, indent=2) + "\n")
    if values["plot_path"]:
        from parley.bench.plot import write_plot

        write_plot(report, values["plot_path"])

    failed = [name for name, result in report["workloads"].items() if "error" in result]
    if failed:
        raise click.ClickException(f"workloads failed: {', '.join(failed)}")
