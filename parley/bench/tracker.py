"""Who should get which message, who did, when, and how often: lost and doubled.

Every message a phase sends carries a client id ``<tag>-<index>``. The tracker
notes the moment its frame was written and how many recipients it has; each
recipient's device reports the message frame when it arrives, on the same
monotonic clock. A second arrival at one device is a double; a recipient that
never got it by the end is a loss.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

# Log-spaced histogram bins, 0.01 ms to 100 s, for the plot and the JSON.
_BINS_PER_DECADE = 10
_FIRST_EDGE_MS = 0.01
_DECADES = 7


@dataclass(slots=True)
class Delivery:
    """What one recipient device has seen of a phase's messages."""

    seen: set[int] = field(default_factory=set)


class Tracker:
    """The messages of one phase, their recipients, and every arrival."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.send_ns: list[int] = []
        self.expected: list[int] = []
        self.distinct: list[int] = []
        self.chat_of: list[int] = []
        self.latencies_ns: list[int] = []
        self.last_latencies_ns: list[int] = []
        self.sent_latencies_ns: list[int] = []
        self.expected_total = 0
        self.delivered = 0
        self.doubled = 0
        self.stray = 0
        self.unexpected = 0
        self.confirmed = 0
        self.refused: dict[str, int] = {}
        self.first_send_ns: int | None = None
        self.last_send_ns: int | None = None
        self.last_delivery_ns: int | None = None

    # -- sending -------------------------------------------------------------

    def new_message(self, chat_id: int, recipients: int) -> tuple[int, str]:
        """Register a message about to be written; returns its index and id."""
        index = len(self.send_ns)
        now = time.monotonic_ns()
        self.send_ns.append(now)
        self.expected.append(recipients)
        self.distinct.append(0)
        self.chat_of.append(chat_id)
        self.expected_total += recipients
        if self.first_send_ns is None:
            self.first_send_ns = now
        self.last_send_ns = now
        return index, f"{self.tag}-{index}"

    def stamp(self, index: int) -> None:
        """Take the send moment again, right before the frame is written."""
        self.send_ns[index] = time.monotonic_ns()

    def on_sent(self, client_id: str) -> None:
        index = self.index_of(client_id)
        if index is not None:
            self.confirmed += 1
            self.sent_latencies_ns.append(time.monotonic_ns() - self.send_ns[index])

    def on_refused(self, ref: str | None, code: str) -> None:
        """A send was refused: its recipients are owed nothing."""
        self.refused[code] = self.refused.get(code, 0) + 1
        index = self.index_of(ref) if ref else None
        if index is not None and self.expected[index]:
            self.expected_total -= self.expected[index] - self.distinct[index]
            self.expected[index] = self.distinct[index]

    # -- arriving ------------------------------------------------------------

    def index_of(self, client_id: str) -> int | None:
        tag, _, number = client_id.rpartition("-")
        if tag != self.tag or not number.isdigit():
            return None
        index = int(number)
        return index if index < len(self.send_ns) else None

    def on_message(self, delivery: Delivery, chat_ok: bool, client_id: str) -> None:
        """A recipient device got a message frame, now."""
        now = time.monotonic_ns()
        index = self.index_of(client_id)
        if index is None:
            self.stray += 1
            return
        if not chat_ok:
            self.unexpected += 1
            return
        if index in delivery.seen:
            self.doubled += 1
            return

        delivery.seen.add(index)
        latency_ns = now - self.send_ns[index]
        self.latencies_ns.append(latency_ns)
        self.delivered += 1
        self.last_delivery_ns = now
        self.distinct[index] += 1
        if self.distinct[index] == self.expected[index]:
            self.last_latencies_ns.append(latency_ns)

    # -- results -------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        return self.expected_total - self.delivered

    @property
    def sent(self) -> int:
        return len(self.send_ns)

    def messages(self) -> dict:
        return {
            "sent": self.sent,
            "confirmed": self.confirmed,
            "refused": sum(self.refused.values()),
            "refusal_codes": dict(self.refused),
            "expected_deliveries": self.expected_total,
            "delivered": self.delivered,
            "lost": max(0, self.outstanding),
            "doubled": self.doubled,
            "unexpected": self.unexpected,
            "stray": self.stray,
        }

    def active_window_s(self) -> float:
        """From the first send to the last arrival (or the last send)."""
        if self.first_send_ns is None:
            return 0.0
        end = max(self.last_delivery_ns or 0, self.last_send_ns or 0)
        return max(1e-9, (end - self.first_send_ns) / 1e9)

    def send_window_s(self) -> float:
        if self.first_send_ns is None:
            return 0.0
        return max(1e-9, (self.last_send_ns - self.first_send_ns) / 1e9)


def percentiles_ms(samples_ns: list[int]) -> dict:
    """p50, p99, p99.9 and max of nanosecond samples, in milliseconds."""
    if not samples_ns:
        return {"count": 0, "p50": None, "p99": None, "p99_9": None, "max": None}
    ordered = sorted(samples_ns)
    return {
        "count": len(ordered),
        "p50": _rank(ordered, 0.50) / 1e6,
        "p99": _rank(ordered, 0.99) / 1e6,
        "p99_9": _rank(ordered, 0.999) / 1e6,
        "max": ordered[-1] / 1e6,
    }


def _rank(ordered: list[int], share: float) -> int:
    """The nearest-rank percentile: the smallest sample with ``share`` at or below."""
    position = max(0, math.ceil(share * len(ordered)) - 1)
    return ordered[position]


def histogram_ms(samples_ns: list[int]) -> dict:
    """Counts in log-spaced bins from 0.01 ms to 100 s; the last bin takes the rest."""
    bins = _BINS_PER_DECADE * _DECADES
    edges = [_FIRST_EDGE_MS * 10 ** (i / _BINS_PER_DECADE) for i in range(bins + 1)]
    counts = [0] * bins
    for sample in samples_ns:
        sample_ms = sample / 1e6
        if sample_ms <= _FIRST_EDGE_MS:
            position = 0
        else:
            position = int(math.log10(sample_ms / _FIRST_EDGE_MS) * _BINS_PER_DECADE)
        counts[min(bins - 1, position)] += 1
    return {"edges_ms": [round(edge, 6) for edge in edges], "counts": counts}
