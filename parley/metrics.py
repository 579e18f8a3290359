"""Prometheus metrics of a Parley node, served at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_SENT = Counter(
    "parley_messages_sent_total", "Messages stored and acknowledged to their sender."
)
EVENTS_APPENDED = Counter(
    "parley_events_appended_total", "Events appended to users' logs.", ["kind"]
)
DELIVERY_SECONDS = Histogram(
    "parley_delivery_seconds",
    "From a message being stored to its frames being written to live devices:"
    " once per message for the frames of a fan-out written at once, and once"
    " per frame a slow socket held back.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONNECTIONS = Gauge("parley_connections", "Live WebSocket connections on this node.")
CONNECTIONS_CUT = Counter(
    "parley_connections_cut_total",
    "Connections closed by the server, by reason.",
    ["reason"],
)
REFUSALS = Counter(
    "parley_refusals_total", "Requests and frames refused, by stable code.", ["code"]
)
IMAGES_STORED = Counter("parley_images_stored_total", "Images accepted and stored.")
PUSHES = Counter(
    "parley_pushes_total",
    "Pushes by service and what became of them: queued, delivered, retry, gone, "
    "rejected, or dropped (device live, chat read, muted).",
    ["service", "outcome"],
)
PUSH_SECONDS = Histogram(
    "parley_push_send_seconds", "Time a push service took to answer.", ["service"]
)
PUSH_DELIVERY_SECONDS = Histogram(
    "parley_push_delivery_seconds",
    "From a push being queued with its message to its service accepting it.",
    ["service"],
    buckets=(0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 300),
)
