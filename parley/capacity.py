"""The load, storage, memory and fleet estimate for the brief's figures."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import click

DAY_S = 86_400
YEAR_DAYS = 365
UTF8_MAX_BYTES_PER_CHARACTER = 4

# Rows written per operation, counted from the statements in storage/sql.py.
# A send: the chat's last_seq, the message, the sender's members row, plus one
# message_media row per image and, per member, a users cursor and an event.
SEND_FIXED_ROW_WRITES = 3
SEND_ROW_WRITES_PER_MEMBER = 2
# A delivered receipt: the recipient's users.delivered_cursor and members
# row, then the sender's users cursor and receipt event.
DELIVERED_RECEIPT_ROW_WRITES = 4
# A device acknowledgement: its devices.acked_cursor.
ACK_ROW_WRITES = 1
# A read: the reader's members row, their cursor and read event; per sender
# told, a cursor and a receipt event.
READ_FIXED_ROW_WRITES = 3
READ_ROW_WRITES_PER_SENDER = 2
# A connection opening writes nothing new (its rows exist); closing writes
# users.last_seen_at_ms and devices.last_seen_at_ms: one on average.
CONNECTION_CHANGE_ROW_WRITES = 1
# An upload: the media row and the media_uploads row.
UPLOAD_ROW_WRITES = 2

# Figures named so are fractions; every other figure must be above zero.
SHARES = ("_share", "availability")
CEILINGS = "_ceiling"


def _figure(default: float, meaning: str, group: str):
    return field(default=default, metadata={"meaning": meaning, "group": group})


GROUPS = {
    "brief": "The brief",
    "traffic": "Traffic (assumptions)",
    "content": "Content (assumptions)",
    "wire": "Sizes on the wire (assumptions)",
    "storage": "Sizes at rest (assumptions)",
    "memory": "Memory (assumptions)",
    "capacity": "Capacity of one unit, and headroom",
}


@dataclass(frozen=True)
class Figures:
    """Every input of the estimate: the brief's figures and our assumptions."""

    daily_users: int = _figure(200_000_000, "people active on a day", "brief")
    messages_per_user: float = _figure(10.0, "messages one user sends a day", "brief")
    views_per_user: float = _figure(
        20.0, "message views (history pages fetched) per user a day", "brief"
    )
    max_text_characters: int = _figure(
        2000, "characters of text in one message, at most", "brief"
    )
    max_images_per_message: int = _figure(3, "images in one message, at most", "brief")
    max_image_bytes: int = _figure(1_048_576, "bytes of one image, at most", "brief")
    availability: float = _figure(
        0.9995, "share of the year the service must be up", "brief"
    )

    peak_factor: float = _figure(
        3.0,
        "busiest hour over the day's average, for every rate and for connections",
        "traffic",
    )
    devices_per_user: float = _figure(
        1.5, "devices of one user (phone, laptop, browser)", "traffic"
    )
    online_share_at_peak: float = _figure(
        0.3, "share of devices holding a live connection at the peak", "traffic"
    )
    private_chat_share: float = _figure(
        0.8, "share of messages sent in private chats (2 members)", "traffic"
    )
    group_members: float = _figure(
        8.0, "members of the average group a message is sent to", "traffic"
    )
    reads_per_user: float = _figure(
        20.0, "read-position moves per user a day (a view reads its chat)", "traffic"
    )
    senders_per_read: float = _figure(
        1.2, "distinct senders one read covers; each gets a read receipt", "traffic"
    )
    presence_changes_per_user: float = _figure(
        20.0, "online/offline changes per user a day (ten sessions)", "traffic"
    )
    contacts_per_user: float = _figure(
        50.0, "people sharing a chat with a user, told of their presence", "traffic"
    )
    push_share: float = _figure(
        0.6, "share of a message's recipients whose phone is offline: a push", "traffic"
    )
    full_image_view_share: float = _figure(
        0.5, "share of an image's recipients who open it in full", "traffic"
    )
    history_page_messages: int = _figure(
        50, "messages in one history page (the API's default limit)", "traffic"
    )
    heartbeat_interval_s: float = _figure(
        20.0, "seconds between WebSocket pings of one connection", "traffic"
    )
    presence_ttl_s: float = _figure(
        30.0, "life of a presence entry; its node refreshes it every third", "traffic"
    )

    text_bytes: float = _figure(80.0, "UTF-8 bytes of an average text", "content")
    image_message_share: float = _figure(
        0.1, "share of messages carrying images", "content"
    )
    images_per_image_message: float = _figure(
        1.5, "images in a message that has any", "content"
    )
    image_bytes: int = _figure(
        300_000, "bytes of an average stored image, after cleaning", "content"
    )
    thumbnail_bytes: int = _figure(
        20_000, "bytes of an average 320 px JPEG thumbnail", "content"
    )

    message_json_bytes: int = _figure(
        200, "a message's JSON without text and images (ids, seq, time)", "wire"
    )
    image_json_bytes: int = _figure(190, "one image's entry in that JSON", "wire")
    receipt_json_bytes: int = _figure(90, "a receipt's JSON", "wire")
    read_json_bytes: int = _figure(60, "a read position's JSON", "wire")
    presence_json_bytes: int = _figure(90, "a presence frame's JSON", "wire")
    ack_json_bytes: int = _figure(40, "an acknowledgement's JSON", "wire")
    frame_overhead_bytes: int = _figure(
        100, "a frame's envelope with WebSocket, TLS and TCP/IP headers", "wire"
    )
    request_overhead_bytes: int = _figure(
        700, "an HTTP exchange's headers, bearer token, TLS and TCP/IP", "wire"
    )
    heartbeat_bytes: int = _figure(70, "one ping or pong, with its headers", "wire")
    push_bytes: int = _figure(1000, "one request to FCM, APNs or Web Push", "wire")

    message_row_bytes: int = _figure(
        110, "a messages row without text and images (header, keys, ids)", "storage"
    )
    message_media_row_bytes: int = _figure(
        110, "a message_media row (one per image)", "storage"
    )
    event_row_bytes: int = _figure(110, "an events row without its payload", "storage")
    message_index_bytes: int = _figure(
        100, "index entries of a message: primary and client-id keys", "storage"
    )
    event_index_bytes: int = _figure(
        40, "index entry of an event: its primary key", "storage"
    )
    chats_per_user: float = _figure(30.0, "chats one user is a member of", "storage")
    member_row_bytes: int = _figure(
        150, "a members row, its members_by_user entry, its share of chats", "storage"
    )
    event_retention_days: int = _figure(
        30, "days the event log is kept (messages are kept for ever)", "storage"
    )
    database_replicas: int = _figure(
        3, "copies of each database shard: one per zone", "storage"
    )
    object_storage_copies: int = _figure(
        1,
        "copies of an image we pay for (the store's redundancy is in its price)",
        "storage",
    )
    horizon_days: int = _figure(
        365, "days of growth the storage is sized for", "storage"
    )

    presence_entry_bytes: int = _figure(
        200, "Redis bytes per live connection: its presence entries", "memory"
    )
    subscription_bytes: int = _figure(
        150,
        "Redis bytes per live connection: its user's channel subscription",
        "memory",
    )

    cores_per_node: int = _figure(16, "cores of one server node", "capacity")
    sends_per_core_per_s: float = _figure(
        5000.0, "sends one core handles (the goal, without --bench)", "capacity"
    )
    deliveries_per_core_per_s: float = _figure(
        50_000.0, "frames one core delivers (the goal, without --bench)", "capacity"
    )
    catch_up_events_per_core_per_s: float = _figure(
        20_000.0, "events one core reads back on catch-up (without --bench)", "capacity"
    )
    bytes_per_connection: int = _figure(
        20_480, "memory of one idle connection (the goal, without --bench)", "capacity"
    )
    node_memory_bytes: int = _figure(
        68_719_476_736, "memory of one server node (64 GiB)", "capacity"
    )
    shard_row_writes_per_s: float = _figure(
        20_000.0, "row writes one PostgreSQL shard sustains", "capacity"
    )
    shard_storage_bytes: int = _figure(
        2_000_000_000_000, "disk of one PostgreSQL shard", "capacity"
    )
    redis_ops_per_s: float = _figure(
        100_000.0, "commands one Redis primary sustains", "capacity"
    )
    redis_memory_bytes: int = _figure(
        25_000_000_000, "memory of one Redis primary", "capacity"
    )
    redis_replicas: int = _figure(
        2, "copies of each Redis primary: it and a replica elsewhere", "capacity"
    )
    utilisation_ceiling: float = _figure(
        0.6, "share of any limit a unit may use at the peak", "capacity"
    )
    zone_loss_ceiling: float = _figure(
        0.9, "share of any limit a unit may use with one zone lost", "capacity"
    )
    zones: int = _figure(3, "availability zones the fleet is spread over", "capacity")
    reconnect_window_s: float = _figure(
        60.0, "seconds over which a lost zone's devices reconnect", "capacity"
    )
    catch_up_events_per_reconnect: float = _figure(
        10.0, "events a reconnecting device reads back", "capacity"
    )


def check_figures(f: Figures) -> None:
    """Refuse figures that make no sense or break the brief's limits."""
    for spec in fields(Figures):
        _check_range(spec.name, getattr(f, spec.name))

    if f.zones < 2:
        raise ValueError("--zones must be at least 2 to survive losing one.")
    if f.text_bytes > f.max_text_characters * UTF8_MAX_BYTES_PER_CHARACTER:
        raise ValueError("--text-bytes is more than the longest text can take.")
    if not 1 <= f.images_per_image_message <= f.max_images_per_message:
        raise ValueError("--images-per-image-message must be 1 to the maximum.")
    if f.image_bytes > f.max_image_bytes:
        raise ValueError("--image-bytes is more than an image may have.")


def _check_range(name: str, value: float) -> None:
    flag = "--" + name.replace("_", "-")
    if name.endswith(SHARES) and not 0 <= value <= 1:
        raise ValueError(f"{flag} is a share: from 0 to 1.")
    if name.endswith(CEILINGS) and not 0 < value <= 1:
        raise ValueError(f"{flag} is a share: above 0, at most 1.")
    if not name.endswith(SHARES) and value <= 0:
        raise ValueError(f"{flag} must be more than 0.")


# -- what one server node carries ------------------------------------------

BENCH_KEYS = (
    "sends_per_s",
    "deliveries_per_s",
    "bytes_per_connection",
    "catch_up_events_per_s",
)


@dataclass(frozen=True)
class NodeCapacity:
    """What one server node carries: measured by `parley bench`, or the goals."""

    sends_per_s: float
    deliveries_per_s: float
    bytes_per_connection: float
    catch_up_events_per_s: float
    source: str
    machine: str | None = None
    date: str | None = None


def goal_capacity(f: Figures) -> NodeCapacity:
    """The project's per-core goals, on a node of `cores_per_node` cores."""
    return NodeCapacity(
        sends_per_s=f.sends_per_core_per_s * f.cores_per_node,
        deliveries_per_s=f.deliveries_per_core_per_s * f.cores_per_node,
        bytes_per_connection=f.bytes_per_connection,
        catch_up_events_per_s=f.catch_up_events_per_core_per_s * f.cores_per_node,
        source=f"project goals, {f.cores_per_node} cores per node",
    )


def bench_capacity(document: object) -> NodeCapacity:
    """A node's measured figures, from the JSON that `parley bench` writes."""
    if not isinstance(document, dict) or not isinstance(document.get("per_node"), dict):
        raise ValueError('A bench file is an object with a "per_node" object.')
    _check_keys(document, {"per_node", "machine", "date"}, "the bench file")

    per_node = document["per_node"]
    _check_keys(per_node, set(BENCH_KEYS), '"per_node"')
    for key in BENCH_KEYS:
        value = per_node.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f'"per_node"."{key}" must be a number above 0.')

    machine, date = document.get("machine"), document.get("date")
    return NodeCapacity(
        **{key: float(per_node[key]) for key in BENCH_KEYS},
        source=f"bench on {machine or 'an unnamed machine'}, {date or 'undated'}",
        machine=machine,
        date=date,
    )


def _check_keys(document: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(document) - allowed)
    if unknown:
        raise ValueError(f"Unknown key {unknown[0]!r} in {where}.")


# -- the shape of traffic ----------------------------------------------------


def per_second(f: Figures, per_user_per_day: float) -> float:
    return f.daily_users * per_user_per_day / DAY_S


def members_per_chat(f: Figures) -> float:
    """Members of the chat of an average message, the sender included."""
    return f.private_chat_share * 2 + (1 - f.private_chat_share) * f.group_members


def recipients_per_message(f: Figures) -> float:
    return members_per_chat(f) - 1


def images_per_message(f: Figures) -> float:
    return f.image_message_share * f.images_per_image_message


def online_share_average(f: Figures) -> float:
    return f.online_share_at_peak / f.peak_factor


def connections_at_peak(f: Figures) -> float:
    return f.daily_users * f.devices_per_user * f.online_share_at_peak


def connections_average(f: Figures) -> float:
    return connections_at_peak(f) / f.peak_factor


# -- operations, each an average per second ---------------------------------


def sends_per_s(f: Figures) -> float:
    """Messages stored and answered."""
    return per_second(f, f.messages_per_user)


def message_events_per_s(f: Figures) -> float:
    return sends_per_s(f) * members_per_chat(f)


def deliveries_per_s(f: Figures) -> float:
    """Message frames to every device of every member, the sender's too."""
    return message_events_per_s(f) * f.devices_per_user


def views_per_s(f: Figures) -> float:
    """History pages fetched."""
    return per_second(f, f.views_per_user)


def reads_per_s(f: Figures) -> float:
    """Read positions moved."""
    return per_second(f, f.reads_per_user)


def delivered_receipts_per_s(f: Figures) -> float:
    return sends_per_s(f) * recipients_per_message(f)


def read_receipts_per_s(f: Figures) -> float:
    return reads_per_s(f) * f.senders_per_read


def receipts_per_s(f: Figures) -> float:
    """Receipt events: one per recipient per message, one per sender per read."""
    return delivered_receipts_per_s(f) + read_receipts_per_s(f)


def presence_changes_per_s(f: Figures) -> float:
    """Users going online or offline."""
    return per_second(f, f.presence_changes_per_user)


def heartbeats_per_s(f: Figures) -> float:
    """WebSocket pings, each answered by a pong."""
    return connections_average(f) / f.heartbeat_interval_s


def pushes_per_s(f: Figures) -> float:
    """Notifications to recipients' offline phones."""
    return sends_per_s(f) * recipients_per_message(f) * f.push_share


def image_uploads_per_s(f: Figures) -> float:
    """Images uploaded, each stored with its thumbnail."""
    return sends_per_s(f) * images_per_message(f)


def thumbnail_downloads_per_s(f: Figures) -> float:
    return image_uploads_per_s(f) * recipients_per_message(f) * f.devices_per_user


def full_image_downloads_per_s(f: Figures) -> float:
    return image_uploads_per_s(f) * recipients_per_message(f) * f.full_image_view_share


def image_downloads_per_s(f: Figures) -> float:
    """Thumbnails on every recipient device, full images where opened."""
    return thumbnail_downloads_per_s(f) + full_image_downloads_per_s(f)


OPERATIONS = {
    "send": sends_per_s,
    "deliver": deliveries_per_s,
    "view history": views_per_s,
    "read": reads_per_s,
    "receipts": receipts_per_s,
    "presence changes": presence_changes_per_s,
    "heartbeats": heartbeats_per_s,
    "push notifications": pushes_per_s,
    "image upload": image_uploads_per_s,
    "image download": image_downloads_per_s,
}


# -- the event log and what it sends ---------------------------------------


def read_events_per_s(f: Figures) -> float:
    """One read event in the reader's log, for all their devices."""
    return reads_per_s(f)


def event_rows_per_s(f: Figures) -> float:
    return message_events_per_s(f) + receipts_per_s(f) + read_events_per_s(f)


def event_frames_per_s(f: Figures) -> float:
    """Every event reaches every device of its user, live or on catch-up."""
    return event_rows_per_s(f) * f.devices_per_user


def presence_frames_per_s(f: Figures) -> float:
    """Presence is not logged: only contacts' devices online now hear it."""
    audience = f.contacts_per_user * f.devices_per_user * online_share_average(f)
    return presence_changes_per_s(f) * audience


def connection_changes_per_s(f: Figures) -> float:
    """Each device connects and disconnects as often as its user does."""
    return presence_changes_per_s(f) * f.devices_per_user


# -- sizes of one thing ------------------------------------------------------


def message_body_bytes(f: Figures) -> float:
    """The JSON of an average message, as sent, delivered and logged."""
    images = images_per_message(f) * f.image_json_bytes
    return f.message_json_bytes + f.text_bytes + images


def stored_message_bytes(f: Figures) -> float:
    """A messages row with its text and image list, and its message_media rows."""
    per_image = f.image_json_bytes + f.message_media_row_bytes
    return f.message_row_bytes + f.text_bytes + images_per_message(f) * per_image


def largest_text_bytes(f: Figures) -> int:
    return f.max_text_characters * UTF8_MAX_BYTES_PER_CHARACTER


def largest_frame_bytes(f: Figures) -> int:
    images = f.max_images_per_message * f.image_json_bytes
    body = f.message_json_bytes + largest_text_bytes(f) + images
    return f.frame_overhead_bytes + body


def largest_stored_message_bytes(f: Figures) -> int:
    per_image = f.image_json_bytes + f.message_media_row_bytes
    images = f.max_images_per_message * per_image
    return f.message_row_bytes + largest_text_bytes(f) + images


def largest_upload_bytes(f: Figures) -> int:
    return f.max_images_per_message * f.max_image_bytes


# -- storage, per day --------------------------------------------------------


def messages_bytes_per_day(f: Figures) -> float:
    return sends_per_s(f) * DAY_S * stored_message_bytes(f)


def events_bytes_per_s(f: Figures) -> float:
    messages = message_events_per_s(f) * message_body_bytes(f)
    receipts = receipts_per_s(f) * f.receipt_json_bytes
    reads = read_events_per_s(f) * f.read_json_bytes
    return event_rows_per_s(f) * f.event_row_bytes + messages + receipts + reads


def events_bytes_per_day(f: Figures) -> float:
    return events_bytes_per_s(f) * DAY_S


def message_indexes_bytes_per_day(f: Figures) -> float:
    return sends_per_s(f) * DAY_S * f.message_index_bytes


def event_indexes_bytes_per_day(f: Figures) -> float:
    return event_rows_per_s(f) * DAY_S * f.event_index_bytes


def images_bytes_per_day(f: Figures) -> float:
    return image_uploads_per_s(f) * DAY_S * f.image_bytes


def thumbnails_bytes_per_day(f: Figures) -> float:
    return image_uploads_per_s(f) * DAY_S * f.thumbnail_bytes


def members_bytes(f: Figures) -> float:
    """Memberships do not grow with messages: one row per user per chat."""
    return f.daily_users * f.chats_per_user * f.member_row_bytes


def event_days_kept(f: Figures) -> int:
    return min(f.event_retention_days, f.horizon_days)


@dataclass(frozen=True)
class Stored:
    """Bytes written by one kind of data, and what is kept at the horizon."""

    per_day_bytes: float | None
    per_year_bytes: float | None
    kept_bytes: float
    copies: int
    kept_with_copies_bytes: float


def stored(per_day_bytes: float | None, kept_bytes: float, copies: int) -> Stored:
    per_year = None if per_day_bytes is None else per_day_bytes * YEAR_DAYS
    return Stored(per_day_bytes, per_year, kept_bytes, copies, kept_bytes * copies)


def storage(f: Figures) -> dict[str, Stored]:
    db, objects = f.database_replicas, f.object_storage_copies
    messages = messages_bytes_per_day(f)
    events = events_bytes_per_day(f)
    message_indexes = message_indexes_bytes_per_day(f)
    event_indexes = event_indexes_bytes_per_day(f)
    images, thumbnails = images_bytes_per_day(f), thumbnails_bytes_per_day(f)

    indexes_kept = message_indexes * f.horizon_days + event_indexes * event_days_kept(f)
    return {
        "messages": stored(messages, messages * f.horizon_days, db),
        "events": stored(events, events * event_days_kept(f), db),
        "indexes": stored(message_indexes + event_indexes, indexes_kept, db),
        "members": stored(None, members_bytes(f), db),
        "images": stored(images, images * f.horizon_days, objects),
        "thumbnails": stored(thumbnails, thumbnails * f.horizon_days, objects),
    }


DATABASE_ITEMS = ("messages", "events", "indexes", "members")
OBJECT_ITEMS = ("images", "thumbnails")


def kept_bytes(kept: dict[str, Stored], items: tuple[str, ...]) -> float:
    """One copy of what `items` keep at the horizon."""
    return sum(kept[item].kept_bytes for item in items)


# -- network, bytes per second on average, clients only ----------------------


def network_in(f: Figures) -> dict[str, float]:
    frame = f.frame_overhead_bytes
    return {
        "send commands": sends_per_s(f) * (frame + message_body_bytes(f)),
        "image uploads": image_uploads_per_s(f)
        * (f.request_overhead_bytes + f.image_bytes),
        "history requests": views_per_s(f) * f.request_overhead_bytes,
        "read commands": reads_per_s(f) * (frame + f.read_json_bytes),
        "acknowledgements": event_frames_per_s(f) * (frame + f.ack_json_bytes),
        "pongs": heartbeats_per_s(f) * f.heartbeat_bytes,
    }


def network_out(f: Figures) -> dict[str, float]:
    frame, request = f.frame_overhead_bytes, f.request_overhead_bytes
    page = f.history_page_messages * message_body_bytes(f)
    return {
        "message frames": deliveries_per_s(f) * (frame + message_body_bytes(f)),
        "receipt and read frames": receipt_and_read_frame_bytes_per_s(f),
        "presence frames": presence_frames_per_s(f) * (frame + f.presence_json_bytes),
        "history pages": views_per_s(f) * (request + page),
        "thumbnails": thumbnail_downloads_per_s(f) * (request + f.thumbnail_bytes),
        "full images": full_image_downloads_per_s(f) * (request + f.image_bytes),
        "pushes": pushes_per_s(f) * f.push_bytes,
        "pings": heartbeats_per_s(f) * f.heartbeat_bytes,
    }


def receipt_and_read_frame_bytes_per_s(f: Figures) -> float:
    receipts = receipts_per_s(f) * (f.frame_overhead_bytes + f.receipt_json_bytes)
    reads = read_events_per_s(f) * (f.frame_overhead_bytes + f.read_json_bytes)
    return (receipts + reads) * f.devices_per_user


# -- memory at the peak ------------------------------------------------------


def memory_bytes(f: Figures, node: NodeCapacity) -> dict[str, float]:
    connections = connections_at_peak(f)
    return {
        "connections (server nodes)": connections * node.bytes_per_connection,
        "presence (Redis)": connections * f.presence_entry_bytes,
        "subscriptions (Redis)": connections * f.subscription_bytes,
    }


def redis_memory_bytes(f: Figures) -> float:
    return connections_at_peak(f) * (f.presence_entry_bytes + f.subscription_bytes)


# -- the fleet ---------------------------------------------------------------


@dataclass(frozen=True)
class Demand:
    """One load on a pool at the peak and after a zone loss, and one unit's share."""

    limit: str
    unit_of_load: str
    peak: float
    after_zone_loss: float
    per_unit: float


@dataclass(frozen=True)
class Pool:
    """How many units of one kind, and which rule set the number."""

    demands: dict[str, Demand]
    surviving_share: float
    units_at_ceiling: int
    units_after_zone_loss: int
    units: int
    copies: int
    servers: int


def work(demands: dict[str, Demand], scenario: str) -> float:
    """Units' worth of the busiest limit: loads on one limit add up."""
    by_limit: dict[str, float] = {}
    for demand in demands.values():
        share = getattr(demand, scenario) / demand.per_unit
        by_limit[demand.limit] = by_limit.get(demand.limit, 0.0) + share
    return max(by_limit.values())


def whole_units(units: float) -> int:
    # Rounded first, so that 90.000000001 from float arithmetic stays 90.
    return math.ceil(round(units, 6))


def size_pool(
    f: Figures,
    demands: dict[str, Demand],
    surviving_share: float,
    copies: int,
    multiple_of: int = 1,
) -> Pool:
    at_ceiling = whole_units(work(demands, "peak") / f.utilisation_ceiling)
    survivors_capacity = f.zone_loss_ceiling * surviving_share
    after_zone_loss = whole_units(work(demands, "after_zone_loss") / survivors_capacity)

    units = max(at_ceiling, after_zone_loss)
    units = math.ceil(units / multiple_of) * multiple_of
    return Pool(
        demands,
        surviving_share,
        at_ceiling,
        after_zone_loss,
        units,
        copies,
        units * copies,
    )


def reconnects_per_s(f: Figures) -> float:
    """After a zone is lost, its devices reconnect to the other zones."""
    return connections_at_peak(f) / f.zones / f.reconnect_window_s


def commands_per_s(f: Figures) -> float:
    """Requests that cost about what a send costs: one command, one transaction."""
    return (
        sends_per_s(f)
        + views_per_s(f)
        + reads_per_s(f)
        + event_frames_per_s(f)
        + image_uploads_per_s(f)
        + image_downloads_per_s(f)
        + pushes_per_s(f)
        + connection_changes_per_s(f)
    )


def frames_per_s(f: Figures) -> float:
    """Frames that cost about what a delivery costs."""
    return event_frames_per_s(f) + presence_frames_per_s(f) + heartbeats_per_s(f)


def server_demands(f: Figures, node: NodeCapacity) -> dict[str, Demand]:
    commands, frames = (
        commands_per_s(f) * f.peak_factor,
        frames_per_s(f) * f.peak_factor,
    )
    catch_up = reconnects_per_s(f) * f.catch_up_events_per_reconnect
    memory = memory_bytes(f, node)["connections (server nodes)"]
    return {
        "commands": Demand(
            "cpu", "/s", commands, commands + reconnects_per_s(f), node.sends_per_s
        ),
        "frames": Demand("cpu", "/s", frames, frames, node.deliveries_per_s),
        "catch-up events": Demand(
            "cpu", "/s", 0.0, catch_up, node.catch_up_events_per_s
        ),
        "connection memory": Demand(
            "memory", "bytes", memory, memory, f.node_memory_bytes
        ),
    }


def row_writes_per_s(f: Figures) -> float:
    """Rows inserted or updated, from the statements of each operation."""
    per_send = (
        SEND_FIXED_ROW_WRITES
        + images_per_message(f)
        + SEND_ROW_WRITES_PER_MEMBER * members_per_chat(f)
    )
    per_read = READ_FIXED_ROW_WRITES + READ_ROW_WRITES_PER_SENDER * f.senders_per_read
    return (
        sends_per_s(f) * per_send
        + delivered_receipts_per_s(f) * DELIVERED_RECEIPT_ROW_WRITES
        + event_frames_per_s(f) * ACK_ROW_WRITES
        + reads_per_s(f) * per_read
        + connection_changes_per_s(f) * CONNECTION_CHANGE_ROW_WRITES
        + image_uploads_per_s(f) * UPLOAD_ROW_WRITES
    )


def database_demands(f: Figures) -> dict[str, Demand]:
    writes = row_writes_per_s(f) * f.peak_factor
    reconnect_writes = reconnects_per_s(f) * CONNECTION_CHANGE_ROW_WRITES
    kept = kept_bytes(storage(f), DATABASE_ITEMS)
    return {
        "row writes": Demand(
            "writes", "/s", writes, writes + reconnect_writes, f.shard_row_writes_per_s
        ),
        "data kept": Demand("disk", "bytes", kept, kept, f.shard_storage_bytes),
    }


def redis_ops_per_s(f: Figures) -> float:
    """Publishes, presence scripts and subscriptions: Redis commands."""
    refreshes = connections_average(f) / (f.presence_ttl_s / 3)
    announcements = presence_changes_per_s(f) * f.contacts_per_user
    # Each connection change runs a presence script and (un)subscribes.
    connection_changes = connection_changes_per_s(f) * 2
    return event_rows_per_s(f) + announcements + refreshes + connection_changes


def redis_demands(f: Figures) -> dict[str, Demand]:
    ops = redis_ops_per_s(f) * f.peak_factor
    memory = redis_memory_bytes(f)
    return {
        "commands": Demand(
            "ops", "/s", ops, ops + reconnects_per_s(f) * 2, f.redis_ops_per_s
        ),
        "memory": Demand("memory", "bytes", memory, memory, f.redis_memory_bytes),
    }


def fleet(f: Figures, node: NodeCapacity) -> dict[str, Pool]:
    """Server nodes lose a zone's share; shards and Redis promote a replica."""
    survivors = (f.zones - 1) / f.zones
    return {
        "server nodes": size_pool(f, server_demands(f, node), survivors, 1, f.zones),
        "database shards": size_pool(f, database_demands(f), 1.0, f.database_replicas),
        "Redis primaries": size_pool(f, redis_demands(f), 1.0, f.redis_replicas),
    }


def object_storage(f: Figures) -> dict[str, float]:
    kept = kept_bytes(storage(f), OBJECT_ITEMS) * f.object_storage_copies
    return {
        "kept_bytes": kept,
        "puts_per_s_at_peak": image_uploads_per_s(f) * 2 * f.peak_factor,
        "gets_per_s_at_peak": image_downloads_per_s(f) * f.peak_factor,
    }


def downtime_per_year_s(f: Figures) -> float:
    return (1 - f.availability) * YEAR_DAYS * DAY_S


# -- the whole estimate ------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    average_per_s: float
    peak_per_s: float


def rate(f: Figures, average_per_s: float) -> Rate:
    return Rate(average_per_s, average_per_s * f.peak_factor)


def rates(f: Figures, averages: dict[str, float]) -> dict[str, Rate]:
    with_total = {**averages, "total": sum(averages.values())}
    return {name: rate(f, value) for name, value in with_total.items()}


@dataclass(frozen=True)
class Estimate:
    figures: Figures
    node: NodeCapacity
    operations: dict[str, Rate]
    storage: dict[str, Stored]
    network_in_bytes: dict[str, Rate]
    network_out_bytes: dict[str, Rate]
    connections_at_peak: float
    memory_bytes: dict[str, float]
    largest_message: dict[str, int]
    fleet: dict[str, Pool]
    object_storage: dict[str, float]
    downtime_per_year_s: float


def estimate(f: Figures, node: NodeCapacity) -> Estimate:
    return Estimate(
        figures=f,
        node=node,
        operations={name: rate(f, of(f)) for name, of in OPERATIONS.items()},
        storage=storage(f),
        network_in_bytes=rates(f, network_in(f)),
        network_out_bytes=rates(f, network_out(f)),
        connections_at_peak=connections_at_peak(f),
        memory_bytes=memory_bytes(f, node),
        largest_message={
            "text_bytes": largest_text_bytes(f),
            "frame_bytes": largest_frame_bytes(f),
            "stored_bytes": largest_stored_message_bytes(f),
            "upload_bytes": largest_upload_bytes(f),
        },
        fleet=fleet(f, node),
        object_storage=object_storage(f),
        downtime_per_year_s=downtime_per_year_s(f),
    )


# -- rendering ---------------------------------------------------------------


def render_json(result: Estimate) -> str:
    return json.dumps(asdict(result), indent=2)


def render_markdown(result: Estimate) -> str:
    sections = [
        _figures_section(result),
        _operations_section(result),
        _storage_section(result),
        _network_section(result),
        _memory_section(result),
        _largest_message_section(result),
        _fleet_section(result),
    ]
    return "\n\n".join(sections)


def _table(header: list[str], rows: list[list[str]], words: int = 1) -> str:
    """A Markdown table: the first `words` columns to the left, numbers right."""
    align = ["---"] * words + ["---:"] * (len(header) - words)
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def _count(value: float) -> str:
    return f"{round(value):,}"


def _plain(value: float) -> str:
    if isinstance(value, int) or value.is_integer():
        return f"{round(value):,}"
    return f"{value:g}"


def _scaled(value: float, units: tuple[str, ...]) -> str:
    for unit in units[:-1]:
        if abs(value) < 999.5:
            return f"{value:.3g} {unit}"
        value /= 1000
    return f"{value:,.3g} {units[-1]}"


def _bytes(value: float | None) -> str:
    if value is None:
        return "–"
    return _scaled(value, ("B", "kB", "MB", "GB", "TB", "PB", "EB"))


def _bits_per_s(bytes_per_s: float) -> str:
    return _scaled(bytes_per_s * 8, ("bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"))


def _load(value: float, unit_of_load: str) -> str:
    return _bytes(value) if unit_of_load == "bytes" else _count(value) + "/s"


def _figures_section(result: Estimate) -> str:
    f, node = result.figures, result.node
    parts = ["## Figures"]
    for group, title in GROUPS.items():
        rows = [
            [
                f"`--{spec.name.replace('_', '-')}`",
                spec.metadata["meaning"],
                _plain(getattr(f, spec.name)),
            ]
            for spec in fields(Figures)
            if spec.metadata["group"] == group
        ]
        table = _table(["flag", "meaning", "value"], rows, words=2)
        parts.append(f"### {title}\n\n" + table)

    parts.append(
        f"One server node ({node.source}): {_count(node.sends_per_s)} sends/s, "
        f"{_count(node.deliveries_per_s)} deliveries/s, "
        f"{_count(node.catch_up_events_per_s)} catch-up events/s, "
        f"{_count(node.bytes_per_connection)} bytes per idle connection."
    )
    return "\n\n".join(parts)


def _operations_section(result: Estimate) -> str:
    rows = [
        [name, OPERATIONS[name].__doc__, _count(r.average_per_s), _count(r.peak_per_s)]
        for name, r in result.operations.items()
    ]
    header = ["operation", "what is counted", "average /s", "peak /s"]
    table = _table(header, rows, words=2)
    return "## Operations\n\n" + table


def _storage_section(result: Estimate) -> str:
    f = result.figures
    rows = [_storage_row(name, s) for name, s in result.storage.items()]
    for title, items in (("database", DATABASE_ITEMS), ("objects", OBJECT_ITEMS)):
        rows.append(_storage_total(title, [result.storage[item] for item in items]))

    header = [
        "data",
        "per day",
        "per year",
        f"kept after {f.horizon_days} days",
        "copies",
        "kept, all copies",
    ]
    note = (
        f"Events are kept {f.event_retention_days} days; messages, images and "
        "memberships for ever. Members do not grow with messages."
    )
    return "## Storage\n\n" + _table(header, rows) + "\n\n" + note


def _storage_row(name: str, s: Stored) -> list[str]:
    return [
        name,
        _bytes(s.per_day_bytes),
        _bytes(s.per_year_bytes),
        _bytes(s.kept_bytes),
        str(s.copies),
        _bytes(s.kept_with_copies_bytes),
    ]


def _storage_total(title: str, items: list[Stored]) -> list[str]:
    per_day = sum(s.per_day_bytes or 0 for s in items)
    return [
        f"**{title}**",
        _bytes(per_day),
        _bytes(per_day * YEAR_DAYS),
        _bytes(sum(s.kept_bytes for s in items)),
        "",
        _bytes(sum(s.kept_with_copies_bytes for s in items)),
    ]


def _network_section(result: Estimate) -> str:
    parts = ["## Network, between clients and server nodes"]
    for title, traffic in (
        ("In", result.network_in_bytes),
        ("Out", result.network_out_bytes),
    ):
        rows = [
            [name, _bits_per_s(r.average_per_s), _bits_per_s(r.peak_per_s)]
            for name, r in traffic.items()
        ]
        parts.append(f"### {title}\n\n" + _table(["traffic", "average", "peak"], rows))
    return "\n\n".join(parts)


def _memory_section(result: Estimate) -> str:
    rows = [["live connections", _count(result.connections_at_peak)]]
    rows += [[name, _bytes(value)] for name, value in result.memory_bytes.items()]
    return "## Connections and memory at the peak\n\n" + _table(["what", "value"], rows)


def _largest_message_section(result: Estimate) -> str:
    sizes = result.largest_message
    rows = [
        ["text, 4 UTF-8 bytes per character", _count(sizes["text_bytes"])],
        ["frame delivering it", _count(sizes["frame_bytes"])],
        ["messages and message_media rows", _count(sizes["stored_bytes"])],
        ["images uploaded for it", _count(sizes["upload_bytes"])],
    ]
    table = _table(["the largest message the brief allows", "bytes"], rows)
    return "## Largest message\n\n" + table


def _fleet_section(result: Estimate) -> str:
    f = result.figures
    minutes = round(result.downtime_per_year_s / 60)
    headroom = (
        f"Availability {f.availability:.2%} allows {minutes // 60} h {minutes % 60} "
        f"min of downtime a year, less than a zone outage lasts, so the fleet "
        f"rides through one: at the peak no unit uses more than "
        f"{f.utilisation_ceiling:.0%} of any limit, and with one zone of {f.zones} "
        f"lost none uses more than {f.zone_loss_ceiling:.0%}, while the lost "
        f"zone's devices reconnect within {_plain(f.reconnect_window_s)} s. Server "
        f"nodes lose their zone's share; database shards and Redis primaries keep "
        f"a replica in another zone and promote it. Loads on one limit add up."
    )
    return "\n\n".join(
        [
            "## Fleet",
            headroom,
            _table(_DEMAND_HEADER, _demand_rows(result.fleet), words=2),
            _table(_POOL_HEADER, _pool_rows(result.fleet)),
            _object_storage_table(result.object_storage),
        ]
    )


_DEMAND_HEADER = [
    "pool",
    "demand",
    "at the peak",
    "after a zone loss",
    "one unit carries",
    "units' worth at the peak",
    "after a zone loss",
]
_POOL_HEADER = [
    "pool",
    "units for the peak",
    "units for a zone loss",
    "units",
    "copies",
    "servers",
]


def _demand_rows(pools: dict[str, Pool]) -> list[list[str]]:
    return [
        [
            pool_name,
            name,
            _load(d.peak, d.unit_of_load),
            _load(d.after_zone_loss, d.unit_of_load),
            _load(d.per_unit, d.unit_of_load),
            f"{d.peak / d.per_unit:.1f}",
            f"{d.after_zone_loss / d.per_unit:.1f}",
        ]
        for pool_name, pool in pools.items()
        for name, d in pool.demands.items()
    ]


def _pool_rows(pools: dict[str, Pool]) -> list[list[str]]:
    return [
        [
            name,
            _count(pool.units_at_ceiling),
            _count(pool.units_after_zone_loss),
            f"**{pool.units:,}**",
            _count(pool.copies),
            f"**{pool.servers:,}**",
        ]
        for name, pool in pools.items()
    ]


def _object_storage_table(objects: dict[str, float]) -> str:
    row = [
        "object storage",
        _bytes(objects["kept_bytes"]),
        _count(objects["puts_per_s_at_peak"]),
        _count(objects["gets_per_s_at_peak"]),
    ]
    header = ["pool", "kept, all copies", "PUT/s at the peak", "GET/s at the peak"]
    return _table(header, [row])


# -- the command -------------------------------------------------------------


def _figure_options(command):
    for spec in reversed(fields(Figures)):
        command = click.option(
            "--" + spec.name.replace("_", "-"),
            spec.name,
            type=type(spec.default),
            default=spec.default,
            show_default=True,
            help=spec.metadata["meaning"] + ".",
        )(command)
    return command


@click.command()
@_figure_options
@click.option(
    "--bench",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON of one node's measured figures, from `parley bench`.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["markdown", "json"]),
    default="markdown",
    show_default=True,
)
def capacity(bench: Path | None, output_format: str, **values: float) -> None:
    """Estimate load, storage, memory and the fleet from the brief's figures."""
    figures = Figures(**values)
    try:
        check_figures(figures)
        node = goal_capacity(figures) if bench is None else _read_bench(bench)
    except ValueError as error:
        raise click.UsageError(str(error)) from None

    result = estimate(figures, node)
    render = render_json if output_format == "json" else render_markdown
    click.echo(render(result))


def _read_bench(path: Path) -> NodeCapacity:
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON: {error}") from None
    return bench_capacity(document)


if __name__ == "__main__":
    capacity()
