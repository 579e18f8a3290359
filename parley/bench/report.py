"""The bench's report: the JSON document, the goals, ratios to the relay, the table.

``per_node`` holds the four figures ``parley capacity --bench`` reads. The
capacity file refuses any other key, so it is written separately, by
``capacity_document``, beside the full report.
"""

from __future__ import annotations

import math

GOAL_SENDS_PER_S = 5_000
GOAL_DELIVERIES_PER_S = 50_000
GOAL_BYTES_PER_CONNECTION = 20 * 1024
GOAL_RECONNECT_DEVICES = 10_000
GOAL_RECONNECT_MISSED = 100
GOAL_RECONNECT_S = 10.0

FORMAT_VERSION = 1


def build_report(
    *,
    date: str,
    command: str,
    machine: dict,
    setup: dict,
    workloads: dict[str, dict],
) -> dict:
    per_node, basis = per_node_figures(workloads)
    return {
        "format": FORMAT_VERSION,
        "date": date,
        "command": command,
        "machine": machine,
        "setup": setup,
        "workloads": workloads,
        "goals": goals(workloads, pinned=setup.get("pinned", False)),
        "per_node": per_node,
        "per_node_basis": basis,
    }


def capacity_document(report: dict, machine_line: str) -> dict | None:
    """The file `parley capacity --bench` reads, when all four figures exist."""
    per_node = report["per_node"]
    if len(per_node) < 4 or not all(value and value > 0 for value in per_node.values()):
        return None
    return {"per_node": per_node, "machine": machine_line, "date": report["date"][:10]}


# -- the four figures of one node --------------------------------------------------


def per_node_figures(workloads: dict[str, dict]) -> tuple[dict, dict]:
    """What one server carried, and where each figure comes from."""
    figures: dict[str, float] = {}
    basis: dict[str, str] = {}
    for key, finder in (
        ("sends_per_s", _sends_per_s),
        ("deliveries_per_s", _deliveries_per_s),
        ("bytes_per_connection", _bytes_per_connection),
        ("catch_up_events_per_s", _catch_up_events_per_s),
    ):
        found = finder(workloads)
        if found is not None and found[0] > 0:
            figures[key], basis[key] = round(found[0], 1), found[1]
    return figures, basis


def _ok(result: dict | None) -> bool:
    return bool(result) and "error" not in result and bool(result.get("runs"))


def _sends_per_s(workloads: dict) -> tuple[float, str] | None:
    result = workloads.get("private")
    if not _ok(result):
        return None
    held = [run for run in result["runs"] if run.get("held")]
    if result["parameters"].get("step") and held:
        best = max(held, key=lambda run: run["rate"])
        return (
            best["throughput"]["confirmed_sends_per_s"],
            f"private: the highest rate held in step mode ({best['label']})",
        )
    run = result["runs"][-1]
    return (
        run["server"]["sends_per_cpu_s"],
        f"private: sends per second of server CPU at {run['label']} (extrapolated)",
    )


def _deliveries_per_s(workloads: dict) -> tuple[float, str] | None:
    result = workloads.get("group")
    if not _ok(result):
        return None
    held = [run for run in result["runs"] if run.get("held")]
    if result["parameters"].get("step") and held:
        best = max(held, key=lambda run: run["throughput"]["deliveries_per_s"])
        return (
            best["throughput"]["deliveries_per_s"],
            f"group: the highest deliveries rate held in step mode ({best['label']})",
        )
    best = max(result["runs"], key=lambda run: run["server"]["deliveries_per_cpu_s"])
    return (
        best["server"]["deliveries_per_cpu_s"],
        f"group: deliveries per second of server CPU, {best['label']} (extrapolated)",
    )


def _bytes_per_connection(workloads: dict) -> tuple[float, str] | None:
    result = workloads.get("idle")
    if not _ok(result):
        return None
    largest = max(result["runs"], key=lambda run: run["connections"])
    return largest["bytes_per_connection"], f"idle: {largest['label']}"


def _catch_up_events_per_s(workloads: dict) -> tuple[float, str] | None:
    result = workloads.get("reconnect")
    if not _ok(result):
        return None
    run = result["runs"][0]
    return run["catch_up_events_per_s"], f"reconnect: {run['label']}"


# -- the goals -------------------------------------------------------------------


def goals(workloads: dict, *, pinned: bool) -> list[dict]:
    """Where each of the project's four goals stands, from what was measured."""
    core = "" if pinned else " (server not pinned: more than one core may have served)"
    return [
        _private_goal(workloads.get("private"), core),
        _group_goal(workloads.get("group"), core),
        _idle_goal(workloads.get("idle")),
        _reconnect_goal(workloads.get("reconnect")),
    ]


def _goal(goal: str, measured: object, met: bool | None, note: str) -> dict:
    return {"goal": goal, "measured": measured, "met": met, "note": note}


def _private_goal(result: dict | None, core: str) -> dict:
    goal = (
        f"≥{GOAL_SENDS_PER_S:,} private messages/s on one server core at p99 < 100 ms"
    )
    if not _ok(result):
        return _goal(goal, None, None, "not measured")
    held = result.get("highest_rate_held")
    if not result["parameters"].get("step"):
        run = result["runs"][0]
        per_cpu_s = run["server"]["sends_per_cpu_s"]
        note = f"fixed rate only; {per_cpu_s:,.0f} sends per CPU-second"
        return _goal(goal, held, None, note + core)
    if held is None:
        return _goal(goal, 0, False, "no step held" + core)
    met = held >= GOAL_SENDS_PER_S
    share = held / GOAL_SENDS_PER_S
    return _goal(
        goal,
        held,
        met,
        f"highest rate held {held:,.0f}/s, {share:.0%} of the goal" + core,
    )


def _group_goal(result: dict | None, core: str) -> dict:
    goal = f"≥{GOAL_DELIVERIES_PER_S:,} group deliveries/s on one server core"
    if not _ok(result):
        return _goal(goal, None, None, "not measured")
    held = [run for run in result["runs"] if run.get("held")]
    if not held:
        return _goal(goal, 0, False, "no run held" + core)
    best = max(held, key=lambda run: run["throughput"]["deliveries_per_s"])
    rate = best["throughput"]["deliveries_per_s"]
    if not result["parameters"].get("step"):
        note = f"fixed rate only; best {rate:,.0f}/s ({best['label']})"
        return _goal(
            goal, rate, True if rate >= GOAL_DELIVERIES_PER_S else None, note + core
        )
    share = rate / GOAL_DELIVERIES_PER_S
    note = f"{rate:,.0f}/s held ({best['label']}), {share:.0%} of the goal"
    return _goal(goal, rate, rate >= GOAL_DELIVERIES_PER_S, note + core)


def _idle_goal(result: dict | None) -> dict:
    goal = "≤20 KiB of server memory per idle connection"
    if not _ok(result):
        return _goal(goal, None, None, "not measured")
    largest = max(result["runs"], key=lambda run: run["connections"])
    value = largest["bytes_per_connection"]
    note = f"{value / 1024:,.1f} KiB per connection at {largest['label']}"
    return _goal(goal, value, value <= GOAL_BYTES_PER_CONNECTION, note)


def _reconnect_goal(result: dict | None) -> dict:
    goal = (
        f"{GOAL_RECONNECT_DEVICES:,} devices × {GOAL_RECONNECT_MISSED} missed messages "
        f"caught up within {GOAL_RECONNECT_S:g} s"
    )
    if not _ok(result):
        return _goal(goal, None, None, "not measured")
    run, parameters = result["runs"][0], result["parameters"]
    messages = run["messages"]
    intact = messages["lost"] == 0 and messages["doubled"] == 0
    at_scale = (
        parameters["devices"] >= GOAL_RECONNECT_DEVICES
        and parameters["missed"] >= GOAL_RECONNECT_MISSED
    )
    if at_scale:
        met = intact and run["catch_up_s"] <= GOAL_RECONNECT_S
        return _goal(
            goal, run["catch_up_s"], met, f"caught up in {run['catch_up_s']:.1f} s"
        )

    events = GOAL_RECONNECT_DEVICES * GOAL_RECONNECT_MISSED
    projected_s = events / max(run["catch_up_events_per_s"], 1e-9)
    note = (
        f"measured {run['label']} in {run['catch_up_s']:.1f} s; at "
        f"{run['catch_up_events_per_s']:,.0f} events/s, {events:,} events would take "
        f"about {projected_s:.0f} s (projected, not measured)"
    )
    return _goal(goal, round(projected_s, 1), None, note)


# -- ratios to the relay ---------------------------------------------------------


def relay_ratios(parley: dict, relay: dict) -> dict:
    """Parley's figures divided by the relay's, run by run where both ran."""
    relay_runs = {run["label"]: run for run in relay["runs"]}
    runs = []
    for run in parley["runs"]:
        other = relay_runs.get(run["label"])
        if other is not None:
            runs.append({"label": run["label"], **_run_ratios(run, other)})

    ratios: dict = {"runs": runs}
    for key in ("highest_rate_held",):
        if parley.get(key) and relay.get(key):
            ratios[key] = round(parley[key] / relay[key], 3)
    if "highest_deliveries_rate_held" in parley:
        ratios["highest_deliveries_rate_held"] = {
            size: _ratio(rate, relay["highest_deliveries_rate_held"].get(size))
            for size, rate in parley["highest_deliveries_rate_held"].items()
        }
    return ratios


def _run_ratios(run: dict, other: dict) -> dict:
    if "bytes_per_connection" in run:
        return {
            "bytes_per_connection": _ratio(
                run["bytes_per_connection"], other["bytes_per_connection"]
            ),
            "connect_p99": _ratio(
                run["connect_latency_ms"]["p99"], other["connect_latency_ms"]["p99"]
            ),
        }
    return {
        "deliveries_per_s": _ratio(
            run["throughput"]["deliveries_per_s"],
            other["throughput"]["deliveries_per_s"],
        ),
        "latency_p50": _ratio(run["latency_ms"]["p50"], other["latency_ms"]["p50"]),
        "latency_p99": _ratio(run["latency_ms"]["p99"], other["latency_ms"]["p99"]),
        "cpu_per_delivery": _ratio(
            run["server"]["cpu_us_per_delivery"], other["server"]["cpu_us_per_delivery"]
        ),
        "cpu_percent": _ratio(
            run["server"]["cpu_percent"], other["server"]["cpu_percent"]
        ),
    }


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return round(value / base, 3)


# -- the table -------------------------------------------------------------------

_COLUMNS = [
    "workload",
    "run",
    "target",
    "sends/s",
    "deliveries/s",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
    "lost",
    "doubled",
    "CPU s",
    "CPU %",
    "RSS MiB",
    "note",
]


def table(report: dict) -> str:
    """Every run of every workload, Parley's and the relay's, as a Markdown table."""
    rows = []
    for name, result in report["workloads"].items():
        if "error" in result:
            rows.append([name, "–", "parley", *["–"] * 11, result["error"][:80]])
            continue
        for target, runs in (
            ("parley", result["runs"]),
            ("relay", _relay_runs(result)),
        ):
            rows += [_row(name, target, run) for run in runs]
    return _markdown(_COLUMNS, rows)


def _relay_runs(result: dict) -> list[dict]:
    relay = result.get("relay") or {}
    return relay.get("runs", []) if "error" not in relay else []


def _row(name: str, target: str, run: dict) -> list[str]:
    latency = run.get("latency_ms") or run.get("connect_latency_ms") or {}
    throughput = run.get("throughput", {})
    messages = run.get("messages", {})
    server = run.get("server", {})
    return [
        name,
        run["label"],
        target,
        _number(throughput.get("confirmed_sends_per_s")),
        _number(throughput.get("deliveries_per_s")),
        _ms(latency.get("p50")),
        _ms(latency.get("p99")),
        _ms(latency.get("p99_9")),
        _ms(latency.get("max")),
        _number(messages.get("lost")),
        _number(messages.get("doubled")),
        _number(server.get("cpu_s"), 1),
        _number(server.get("cpu_percent"), 0),
        _number(server.get("rss_peak_bytes", 0) / 2**20, 0),
        _note(run),
    ]


def _note(run: dict) -> str:
    if "bytes_per_connection" in run:
        return (
            f"{run['bytes_per_connection'] / 1024:,.1f} KiB/connection; "
            f"{run['connects_per_s']:,.0f} connects/s; latency = connect to synced"
        )
    if "catch_up_s" in run:
        return (
            f"caught up in {run['catch_up_s']:.2f} s, "
            f"{run['catch_up_events_per_s']:,.0f} events/s; "
            "latency = reconnect to synced"
        )
    parts = []
    last = run.get("last_recipient_latency_ms") or {}
    if run.get("group_size") and last.get("p99") is not None:
        parts.append(f"last recipient p99 {last['p99']:.1f} ms")
    if "mix" in run:
        mix = run["mix"]
        view_p99 = _ms(mix["view_latency_ms"]["p99"])
        parts.append(
            f"{mix['views_per_s']:,.0f} views/s (p99 {view_p99} ms), "
            f"{mix['reads_per_s']:,.0f} reads/s, {mix['images_sent']} images"
        )
    if "verdict" in run:
        parts.append(run["verdict"])
    return "; ".join(parts)


def _number(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if 0 < abs(value) < 10 and digits == 0 and not float(value).is_integer():
        digits = 1
    return f"{value:,.{digits}f}"


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if value < 10 else f"{value:,.1f}"


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def ratio_table(report: dict) -> str:
    """Parley's figures as multiples of the relay's, where both ran."""
    rows = []
    for name, result in report["workloads"].items():
        ratios = result.get("ratio_to_relay")
        if not ratios:
            continue
        for run in ratios["runs"]:
            figures = ", ".join(
                f"{key.replace('_', ' ')} ×{value:g}"
                for key, value in run.items()
                if key != "label" and value is not None
            )
            rows.append([name, run["label"], figures])
    if not rows:
        return ""
    return _markdown(["workload", "run", "Parley ÷ relay"], rows)


def goals_table(report: dict) -> str:
    rows = [
        [
            goal["goal"],
            {True: "met", False: "missed", None: "open"}[goal["met"]],
            goal["note"],
        ]
        for goal in report["goals"]
    ]
    return _markdown(["goal", "status", "measured"], rows)
