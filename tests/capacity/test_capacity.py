"""The capacity estimate: its arithmetic by hand, its scaling, its document."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from parley import capacity as c
from parley.config import Settings

DOC = Path(__file__).parents[2] / "docs" / "capacity.md"
BEGIN, END = "<!-- capacity:begin -->\n", "<!-- capacity:end -->\n"

BRIEF = c.Figures()
GOALS = c.goal_capacity(BRIEF)


def run(*args: str) -> str:
    result = CliRunner().invoke(c.capacity, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def bench(**per_node: float) -> dict:
    figures = {
        "sends_per_s": 80_000,
        "deliveries_per_s": 800_000,
        "bytes_per_connection": 20_480,
        "catch_up_events_per_s": 320_000,
    }
    return {"per_node": {**figures, **per_node}, "machine": "test", "date": "today"}


# -- rates, by hand ----------------------------------------------------------


def test_sends_spread_the_brief_messages_over_a_day_and_triple_at_the_peak():
    """200M users x 10 messages / 86,400 s = 23,148/s; x3 = 69,444/s."""
    send = c.estimate(BRIEF, GOALS).operations["send"]

    assert send.average_per_s == pytest.approx(23_148.148, abs=0.001)
    assert send.peak_per_s == pytest.approx(69_444.444, abs=0.001)


def test_a_message_goes_to_every_device_of_every_member():
    """0.8 x 2 + 0.2 x 8 = 3.2 members; 23,148 x 3.2 x 1.5 devices = 111,111/s."""
    deliver = c.estimate(BRIEF, GOALS).operations["deliver"]

    assert c.members_per_chat(BRIEF) == pytest.approx(3.2)
    assert deliver.average_per_s == pytest.approx(111_111.11, abs=0.01)


def test_receipts_count_each_recipient_of_a_message_and_each_sender_of_a_read():
    """2e9 x 2.2 recipients + 4e9 reads x 1.2 senders = 9.2e9 receipts a day."""
    receipts = c.estimate(BRIEF, GOALS).operations["receipts"]

    assert receipts.average_per_s * c.DAY_S == pytest.approx(9.2e9)


def test_connections_heartbeats_and_their_memory_at_the_peak():
    """200M x 1.5 devices x 0.3 online = 90M; / 20 s = 4.5M pings/s; x 20 KiB."""
    result = c.estimate(BRIEF, GOALS)

    assert result.connections_at_peak == pytest.approx(90e6)
    assert result.operations["heartbeats"].peak_per_s == pytest.approx(4.5e6)
    memory = result.memory_bytes["connections (server nodes)"]
    assert memory == pytest.approx(90e6 * 20_480)


# -- storage, by hand --------------------------------------------------------


def test_images_take_ninety_terabytes_a_day():
    """2e9 messages x 0.1 with images x 1.5 = 3e8 images x 300 kB = 9e13 bytes."""
    images = c.estimate(BRIEF, GOALS).storage["images"]

    assert images.per_day_bytes == pytest.approx(9e13)
    assert images.per_year_bytes == pytest.approx(9e13 * 365)
    assert images.kept_with_copies_bytes == pytest.approx(9e13 * 365)


def test_a_stored_message_takes_its_row_its_text_and_its_image_references():
    """110 + 80 + 0.15 images x (190 + 110) = 235 bytes; x 2e9 = 470 GB a day."""
    messages = c.estimate(BRIEF, GOALS).storage["messages"]

    assert c.stored_message_bytes(BRIEF) == pytest.approx(235)
    assert messages.per_day_bytes == pytest.approx(4.7e11)
    assert messages.kept_with_copies_bytes == pytest.approx(4.7e11 * 365 * 3)


def test_the_event_log_holds_one_row_per_member_and_is_kept_thirty_days():
    """Message events 6.4e9 x (110 + 200 + 80 + 28.5) = 2.6784e12 bytes a day,
    receipts 9.2e9 x (110 + 90) = 1.84e12, reads 4e9 x (110 + 60) = 6.8e11."""
    events = c.estimate(BRIEF, GOALS).storage["events"]

    per_day = 2.6784e12 + 1.84e12 + 6.8e11
    assert events.per_day_bytes == pytest.approx(per_day)
    assert events.kept_bytes == pytest.approx(per_day * 30)


# -- the fleet, by hand ------------------------------------------------------


def test_database_shards_are_set_by_the_data_kept_after_a_year():
    """Kept: messages 4.7e11 x 365 = 1.7155e14, events 5.1984e12 x 30 = 1.55952e14,
    indexes 2e11 x 365 + 19.6e9 events x 40 x 30 = 9.652e13, members 9e11: in
    all 4.24922e14 / 2 TB = 212.5 shards' worth; / 0.6 = 354.1, so 355. Writes
    are 9.43e10 a day x 3 / 86,400 = 3,274,306/s / 20,000 / 0.6 = 273: fewer."""
    shards = c.estimate(BRIEF, GOALS).fleet["database shards"]

    assert shards.demands["data kept"].peak == pytest.approx(4.24922e14)
    assert shards.demands["row writes"].peak == pytest.approx(3_274_305.6, abs=0.1)
    assert shards.units == 355
    assert shards.servers == 355 * 3


def test_server_nodes_must_absorb_a_lost_zone_reconnecting_at_the_peak():
    """Commands 4.966e10 a day x 3 / 86,400 = 1,724,306/s, plus 30M devices
    reconnecting over 60 s = 500,000/s: / 80,000 = 27.80 nodes' worth; frames
    1.89e11 a day -> 6,562,500/s / 800,000 = 8.20; catch-up 5M/s / 320,000 =
    15.63. In all 51.63 / (0.9 x 2/3 zones left) = 86.05, so 87: a multiple of 3."""
    nodes = c.estimate(BRIEF, GOALS).fleet["server nodes"]

    assert nodes.demands["commands"].peak == pytest.approx(1_724_305.6, abs=0.1)
    assert nodes.demands["frames"].peak == pytest.approx(6_562_500)
    assert nodes.units_after_zone_loss == 87
    assert nodes.units == 87


def test_a_bench_with_heavier_connections_makes_memory_set_the_node_count():
    """90M x 40,960 bytes / 64 GiB = 53.6 nodes' worth; / 0.6 = 89.4, so 90."""
    measured = c.bench_capacity(
        bench(
            sends_per_s=800_000,
            deliveries_per_s=8_000_000,
            catch_up_events_per_s=3_200_000,
            bytes_per_connection=40_960,
        )
    )
    nodes = c.estimate(BRIEF, measured).fleet["server nodes"]

    assert nodes.units_at_ceiling == 90
    assert nodes.units == 90


def test_a_bench_file_given_to_the_command_changes_the_node_count(tmp_path):
    """Half the goal's rates: commands after a zone loss 2,224,306/s / 40,000 =
    55.61, frames 6,562,500/s / 400,000 = 16.41, catch-up 15.63: 87.64 / 0.6 =
    146.1, so 147 nodes (a multiple of 3) instead of 87."""
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(bench(sends_per_s=40_000, deliveries_per_s=400_000)))

    measured = json.loads(run("--format", "json", "--bench", str(path)))
    goals = json.loads(run("--format", "json"))

    assert measured["fleet"]["server nodes"]["units"] == 147
    assert goals["fleet"]["server nodes"]["units"] == 87
    assert measured["node"]["machine"] == "test"


def test_the_goals_are_per_core_figures_times_the_cores_of_a_node():
    """5,000 sends and 50,000 deliveries per core, 16 cores per node."""
    assert GOALS.sends_per_s == 80_000
    assert GOALS.deliveries_per_s == 800_000
    assert GOALS.bytes_per_connection == 20_480


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"per_node": {}},
        {**bench(), "cpu": "fast"},
        bench(sends_per_s=0),
        bench(deliveries_per_s="many"),
        {"per_node": {**bench()["per_node"], "pings_per_s": 1}},
    ],
    ids=["not-an-object", "missing", "unknown-key", "zero", "text", "unknown-rate"],
)
def test_a_malformed_bench_file_is_refused_with_a_reason(document):
    """Missing, unknown or non-positive figures are named, not guessed."""
    with pytest.raises(ValueError):
        c.bench_capacity(document)


# -- scaling -----------------------------------------------------------------

users = st.integers(min_value=1_000, max_value=10**10)


def linear_figures(result: c.Estimate) -> dict[str, float]:
    """Every figure of the estimate that should grow with the number of users."""
    figures = {"connections": result.connections_at_peak}
    for name, r in result.operations.items():
        figures[f"operation {name}"] = r.peak_per_s
    for name, r in {**result.network_in_bytes, **result.network_out_bytes}.items():
        figures[f"network {name}"] = r.peak_per_s
    for name, s in result.storage.items():
        figures[f"storage {name}"] = s.kept_with_copies_bytes
    for name, value in result.memory_bytes.items():
        figures[f"memory {name}"] = value
    return figures


@settings(max_examples=50, deadline=None)
@given(users)
def test_every_load_and_size_grows_in_proportion_to_the_users(daily_users):
    """Property: per user, each figure is the same as for the brief's 200M."""
    scaled = c.estimate(replace(BRIEF, daily_users=daily_users), GOALS)
    base = linear_figures(c.estimate(BRIEF, GOALS))

    for name, value in linear_figures(scaled).items():
        per_user = base[name] / BRIEF.daily_users
        assert math.isclose(value / daily_users, per_user, rel_tol=1e-9), name


@settings(max_examples=50, deadline=None)
@given(users, users)
def test_more_users_never_need_fewer_units(some, more):
    """Property: every pool's unit count is monotone in the number of users."""
    fewer, larger = sorted((some, more))
    small = c.estimate(replace(BRIEF, daily_users=fewer), GOALS).fleet
    large = c.estimate(replace(BRIEF, daily_users=larger), GOALS).fleet

    for name, pool in small.items():
        assert pool.units <= large[name].units, name


# -- the command and its document --------------------------------------------


def test_the_document_holds_exactly_what_the_command_prints():
    """docs/capacity.md between its markers is `parley capacity` with defaults."""
    lines = DOC.read_text().splitlines(keepends=True)
    section = lines[lines.index(BEGIN) + 1 : lines.index(END)]

    assert "".join(section) == run("--format", "markdown")


def test_a_flag_replaces_its_figure():
    """Half the users, half the sends."""
    result = json.loads(run("--format", "json", "--daily-users", "100000000"))

    send = result["operations"]["send"]["average_per_s"]
    assert send == pytest.approx(23_148.148 / 2, abs=0.001)


def test_figures_beyond_the_brief_limits_are_refused():
    """An average image larger than the largest allowed is a usage error."""
    result = CliRunner().invoke(c.capacity, ["--image-bytes", "2000000"])

    assert result.exit_code == 2
    assert "--image-bytes" in result.output


def test_the_largest_message_fits_in_one_websocket_frame():
    """2000 characters x 4 bytes + 3 image references fit the frame limit."""
    largest = c.estimate(BRIEF, GOALS).largest_message

    assert largest["text_bytes"] == 8_000
    assert largest["frame_bytes"] == 100 + 200 + 8_000 + 3 * 190
    assert largest["frame_bytes"] <= Settings().max_frame_bytes
