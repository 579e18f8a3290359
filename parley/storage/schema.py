"""The tables of Parley, as SQLAlchemy Core metadata shared by every dialect.

Each table names the column that would distribute it on a sharded PostgreSQL
(Citus): chat tables by ``chat_id``, per-user tables by ``user_id``. Times are
integer milliseconds since the Unix epoch, in UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData()

# Distributed by id (the chat id).
chats = Table(
    "chats",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("title", Text),
    Column("private_key", String(160), unique=True),
    Column("admin_id", String(64)),
    Column("last_seq", BigInteger, nullable=False, default=0),
    Column("created_at_ms", BigInteger, nullable=False),
)

# Distributed by chat_id.
members = Table(
    "members",
    metadata,
    Column("chat_id", BigInteger, primary_key=True),
    Column("user_id", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("joined_after", BigInteger, nullable=False),
    Column("left_at", BigInteger),
    Column("read_seq", BigInteger, nullable=False),
    Column("delivered_seq", BigInteger, nullable=False),
    Column("joined_at_ms", BigInteger, nullable=False),
    Column("muted", Boolean, nullable=False, server_default=false()),
)

# Distributed by user_id: the chats a user is or was in, so that the chat list
# is read from one shard; written with ``members`` in one transaction.
user_chats = Table(
    "user_chats",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("chat_id", BigInteger, primary_key=True),
    Column("joined_at_ms", BigInteger, nullable=False),
)

# Distributed by chat_id; (chat_id, seq) is the message's identity.
messages = Table(
    "messages",
    metadata,
    Column("chat_id", BigInteger, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("sender_id", String(64), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("text", Text),
    Column("images", Text),
    Column("sent_at_ms", BigInteger, nullable=False),
    UniqueConstraint("chat_id", "sender_id", "client_id", name="messages_client_id"),
)

# Distributed by chat_id: which chats hold which image, for download checks.
message_media = Table(
    "message_media",
    metadata,
    Column("chat_id", BigInteger, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("media_id", String(64), nullable=False),
)
Index("message_media_in_chat", message_media.c.chat_id, message_media.c.media_id)

# Distributed by id (the content hash); a reference table would do as well.
media = Table(
    "media",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("content_type", String(32), nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("frames", Integer, nullable=False),
    Column("thumbnail_bytes", Integer, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)

# Distributed by uploader_id.
media_uploads = Table(
    "media_uploads",
    metadata,
    Column("uploader_id", String(64), primary_key=True),
    Column("media_id", String(64), primary_key=True),
    Column("uploaded_at_ms", BigInteger, nullable=False),
)

# Distributed by user_id: the counter of the user's event log, and how far
# any of the user's devices has acknowledged it.
users = Table(
    "users",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("last_cursor", BigInteger, nullable=False, default=0),
    Column("delivered_cursor", BigInteger, nullable=False, default=0),
    Column("last_seen_at_ms", BigInteger),
)

# Distributed by user_id.
devices = Table(
    "devices",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Column("acked_cursor", BigInteger, nullable=False, default=0),
    Column("first_seen_at_ms", BigInteger, nullable=False),
    Column("last_seen_at_ms", BigInteger, nullable=False),
    # Where the device is reached when it has no live connection, if anywhere.
    Column("push_service", String(16)),
    Column("push_token", Text),
    Column("push_p256dh", String(128)),
    Column("push_auth", String(64)),
)

# Distributed by user_id: every event a user's devices must receive, in order.
# The payload is the frame's JSON body, encoded once per fan-out.
events = Table(
    "events",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("cursor", BigInteger, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("chat_id", BigInteger, nullable=False),
    Column("message_seq", BigInteger),
    Column("sender_id", String(64)),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)

# Distributed by user_id: the notification each device is owed, one per chat,
# so that many messages of a chat collapse into one. Queued in the
# transaction that stores the message or moves the read position.
push_jobs = Table(
    "push_jobs",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Column("chat_id", BigInteger, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("queued_at_ms", BigInteger, nullable=False),
    Column("due_at_ms", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("claimed_until_ms", BigInteger, nullable=False),
)
Index("push_jobs_due", push_jobs.c.due_at_ms)

# Distributed by user_id: the notification a device shows for a chat, so that
# reading elsewhere can take it away.
push_shown = Table(
    "push_shown",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Column("chat_id", BigInteger, primary_key=True),
    Column("seq", BigInteger, nullable=False),
)
