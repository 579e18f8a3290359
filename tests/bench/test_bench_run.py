"""A short run of every bench workload against a real server and the relay."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from parley.bench import bench
from parley.capacity import bench_capacity
from tests.support import ServerProcess

# Small enough for seconds, large enough that every path runs.
SMOKE_OPTIONS = [
    "--duration-s", "1",
    "--rate", "40",
    "--users", "6",
    "--group-sizes", "3,6",
    "--group-rate", "100",
    "--connections", "5,20",
    "--devices", "12",
    "--missed", "5",
    "--reconnect-group-size", "4",
    "--ack-interval-ms", "100",
    "--drain-s", "10",
    "--connect-concurrency", "20",
    "--max-run-s", "60",
    "--quiet",
]  # fmt: skip

MESSAGING = ["private", "group", "reconnect", "mix"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("bench") / "data").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def outputs(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One run of all workloads with the relay, and the files it wrote."""
    out = tmp_path_factory.mktemp("bench-out")
    paths = {
        "json": out / "bench.json",
        "capacity": out / "capacity.json",
        "plot": out / "bench.png",
    }
    arguments = [
        "--url", server.url,
        "--data-dir", str(server.data_dir),
        "--compare-relay",
        "--json", str(paths["json"]),
        "--capacity-json", str(paths["capacity"]),
        "--plot", str(paths["plot"]),
        *SMOKE_OPTIONS,
    ]  # fmt: skip
    result = CliRunner().invoke(bench, arguments, catch_exceptions=False)
    return {"result": result, "report": json.loads(paths["json"].read_text()), **paths}


def test_the_command_succeeds_and_prints_a_table_and_the_goals(outputs: dict):
    """Exit 0; the table has a row per run, the goals table names all four."""
    result = outputs["result"]
    assert result.exit_code == 0, result.output
    assert "| workload | run | target |" in result.output
    assert "Parley as a multiple of the bare relay" in result.output
    runs_table = result.output.split("\n\n")[0]
    assert runs_table.count("| idle | ") == 4  # two counts, Parley's and the relay's
    assert "≤20 KiB of server memory per idle connection" in result.output


def test_the_report_names_the_machine_the_date_and_the_command(outputs: dict):
    """The JSON says where and when, and how the run was started."""
    report = outputs["report"]
    assert {"cpu_model", "cores", "memory_bytes", "python"} <= set(report["machine"])
    assert report["date"][:2] == "20"
    assert "--compare-relay" in report["command"]
    assert report["setup"]["workloads"] == [
        "idle",
        "private",
        "group",
        "reconnect",
        "mix",
    ]


@pytest.mark.parametrize("name", MESSAGING)
def test_every_message_reaches_every_recipient_once(outputs: dict, name: str):
    """Nothing lost or doubled at a low rate, and the counts add up."""
    for run in outputs["report"]["workloads"][name]["runs"]:
        messages = run["messages"]
        assert messages["sent"] > 0
        assert messages["confirmed"] == messages["sent"]
        assert messages["delivered"] == messages["expected_deliveries"] > 0
        assert messages["lost"] == messages["doubled"] == 0
        assert messages["unexpected"] == messages["cursor_gaps"] == 0
        assert run["latency_ms"]["count"] > 0
        assert sum(run["histogram"]["counts"]) == run["latency_ms"]["count"]


@pytest.mark.parametrize("name", MESSAGING)
def test_each_run_reports_latency_throughput_and_server_usage(outputs: dict, name: str):
    """Percentiles in order, rates above zero, CPU and memory from psutil."""
    for run in outputs["report"]["workloads"][name]["runs"]:
        latency = run["latency_ms"]
        assert (
            0 <= latency["p50"] <= latency["p99"] <= latency["p99_9"] <= latency["max"]
        )
        assert run["throughput"]["deliveries_per_s"] > 0
        server = run["server"]
        assert server["cpu_s"] >= 0 and server["cpu_percent"] >= 0
        assert server["rss_peak_bytes"] >= server["rss_start_bytes"] > 0


def test_group_runs_measure_the_last_recipient_of_each_message(outputs: dict):
    """One run per size; one last-recipient sample per message sent."""
    runs = outputs["report"]["workloads"]["group"]["runs"]
    assert [run["group_size"] for run in runs] == [3, 6]
    for run in runs:
        last = run["last_recipient_latency_ms"]
        assert last["count"] == run["messages"]["sent"]
        assert last["p99"] >= run["latency_ms"]["p50"]


def test_idle_connections_cost_some_memory_each(outputs: dict):
    """Every connection stayed open, and the server grew by a positive amount."""
    runs = outputs["report"]["workloads"]["idle"]["runs"]
    assert [run["connections"] for run in runs] == [5, 20]
    for run in runs:
        assert run["open_at_end"] == run["connections"]
        assert run["connect_latency_ms"]["count"] == run["connections"]
    assert runs[-1]["bytes_per_connection"] > 0


def test_the_reconnect_storm_catches_every_device_up(outputs: dict):
    """Each device got exactly the messages it missed, before synced."""
    result = outputs["report"]["workloads"]["reconnect"]
    run = result["runs"][0]
    assert result["parameters"] == {"devices": 12, "missed": 5, "group_size": 4}
    assert run["messages"]["delivered"] == 12 * 5
    assert run["catch_up_events"] >= 12 * 5
    assert run["latency_ms"]["count"] == 12
    assert run["catch_up_s"] > 0


def test_the_mix_views_history_sends_images_and_reads(outputs: dict):
    """Views and reads flow alongside the sends; images are attached."""
    mix = outputs["report"]["workloads"]["mix"]["runs"][0]["mix"]
    assert mix["views"] > 0 and mix["view_errors"] == 0
    assert mix["reads"] >= 0
    assert mix["images_sent"] >= 0


@pytest.mark.parametrize("name", ["private", "group", "idle"])
def test_the_relay_runs_the_same_workload_and_gives_ratios(outputs: dict, name: str):
    """The relay's runs match Parley's labels, and each has its ratios."""
    result = outputs["report"]["workloads"][name]
    relay = result["relay"]
    assert "error" not in relay
    assert [run["label"] for run in relay["runs"]] == [
        run["label"] for run in result["runs"]
    ]
    ratios = result["ratio_to_relay"]["runs"]
    assert len(ratios) == len(result["runs"])
    if name != "idle":
        for run in relay["runs"]:
            assert run["messages"]["lost"] == run["messages"]["doubled"] == 0


def test_the_capacity_file_is_accepted_by_parley_capacity(outputs: dict):
    """The per-node file has the four figures, above zero, and nothing else."""
    document = json.loads(Path(outputs["capacity"]).read_text())
    node = bench_capacity(document)
    assert node.sends_per_s > 0 and node.deliveries_per_s > 0
    assert node.bytes_per_connection > 0 and node.catch_up_events_per_s > 0
    assert document["per_node"] == outputs["report"]["per_node"]


def test_the_plot_is_a_png(outputs: dict):
    """The picture exists and starts with the PNG signature."""
    assert Path(outputs["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
