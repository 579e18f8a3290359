"""The bench's picture: latency histograms and percentiles, one row per workload."""

from __future__ import annotations

from pathlib import Path

PERCENTILES = (("p50", "p50"), ("p99", "p99"), ("p99_9", "p99.9"), ("max", "max"))


def write_plot(report: dict, path: Path) -> None:
    """A PNG with, per workload, a histogram of latencies and their percentiles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = [
        (name, result)
        for name, result in report["workloads"].items()
        if "error" not in result and result.get("runs")
    ]
    if not workloads:
        return
    figure, axes = plt.subplots(
        len(workloads),
        2,
        figsize=(13, 3.4 * len(workloads)),
        squeeze=False,
        layout="constrained",
    )
    for row, (name, result) in enumerate(workloads):
        _histograms(axes[row][0], name, result)
        _percentiles(axes[row][1], name, result)

    machine = report["machine"]
    figure.suptitle(
        f"parley bench, {report['date']} — {machine['cpu_model']}, "
        f"{machine['cores']} cores",
        fontsize=11,
    )
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _runs(result: dict) -> list[tuple[str, dict]]:
    """The runs worth drawing: of a step search, the last held and the first failed."""
    runs = [("parley", run) for run in _worth_drawing(result["runs"])]
    relay = result.get("relay")
    if relay and "error" not in relay:
        runs += [("relay", run) for run in _worth_drawing(relay["runs"])]
    return runs


def _worth_drawing(runs: list[dict]) -> list[dict]:
    if not any("held" in run for run in runs):
        return runs
    chosen = []
    for size in dict.fromkeys(run.get("group_size") for run in runs):
        same = [run for run in runs if run.get("group_size") == size]
        held = [run for run in same if run.get("held")]
        failed = [run for run in same if not run.get("held")]
        chosen += held[-1:] + failed[:1]
    return chosen


def _latency(run: dict) -> dict:
    return run.get("latency_ms") or run.get("connect_latency_ms") or {}


def _histograms(axis, name: str, result: dict) -> None:  # noqa: ANN001
    for target, run in _runs(result):
        histogram = run.get("histogram")
        if not histogram or not sum(histogram["counts"]):
            continue
        edges, counts = histogram["edges_ms"], histogram["counts"]
        total = sum(counts)
        shares = [count / total for count in counts]
        axis.step(
            edges[:-1],
            shares,
            where="post",
            linestyle="-" if target == "parley" else "--",
            label=f"{target}: {run['label']}",
        )
    axis.set_xscale("log")
    axis.set_xlabel(_what(result) + " (ms, log scale)")
    axis.set_ylabel("share of samples")
    axis.set_title(f"{name}: distribution")
    axis.legend(fontsize=7)
    axis.grid(True, alpha=0.3)


def _percentiles(axis, name: str, result: dict) -> None:  # noqa: ANN001
    runs = _runs(result)
    labels = [f"{target}\n{run['label']}" for target, run in runs]
    width = 0.8 / len(PERCENTILES)
    for position, (key, title) in enumerate(PERCENTILES):
        values = [_latency(run).get(key) or 0 for _, run in runs]
        xs = [i + (position - 1.5) * width for i in range(len(runs))]
        axis.bar(xs, values, width, label=title)
    axis.set_xticks(range(len(runs)), labels, fontsize=6, rotation=30, ha="right")
    axis.set_yscale("log")
    axis.set_ylabel("ms (log scale)")
    axis.axhline(100, color="red", linewidth=0.8, linestyle=":")
    axis.set_title(f"{name}: percentiles ({_what(result)})")
    axis.legend(fontsize=7)
    axis.grid(True, axis="y", alpha=0.3)


def _what(result: dict) -> str:
    return {
        "idle": "connect to synced",
        "reconnect": "reconnect to synced",
    }.get(result["workload"], "delivery latency")
