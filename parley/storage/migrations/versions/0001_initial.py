"""The first schema: chats, members, messages, media, users, devices, events.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chats",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("private_key", sa.String(length=160), nullable=True),
        sa.Column("admin_id", sa.String(length=64), nullable=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("private_key"),
    )
    op.create_table(
        "devices",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("acked_cursor", sa.BigInteger(), nullable=False),
        sa.Column("first_seen_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "device_id"),
    )
    op.create_table(
        "events",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("message_seq", sa.BigInteger(), nullable=True),
        sa.Column("sender_id", sa.String(length=64), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "cursor"),
    )
    op.create_table(
        "media",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("thumbnail_bytes", sa.Integer(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "media_uploads",
        sa.Column("uploader_id", sa.String(length=64), nullable=False),
        sa.Column("media_id", sa.String(length=64), nullable=False),
        sa.Column("uploaded_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("uploader_id", "media_id"),
    )
    op.create_table(
        "members",
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("joined_after", sa.BigInteger(), nullable=False),
        sa.Column("left_at", sa.BigInteger(), nullable=True),
        sa.Column("read_seq", sa.BigInteger(), nullable=False),
        sa.Column("delivered_seq", sa.BigInteger(), nullable=False),
        sa.Column("joined_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chat_id", "user_id"),
    )
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.create_index("members_by_user", ["user_id", "chat_id"], unique=False)

    op.create_table(
        "message_media",
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("media_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("chat_id", "seq", "position"),
    )
    with op.batch_alter_table("message_media", schema=None) as batch_op:
        batch_op.create_index("message_media_by_media", ["media_id"], unique=False)

    op.create_table(
        "messages",
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("sender_id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("images", sa.Text(), nullable=True),
        sa.Column("sent_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chat_id", "seq"),
        sa.UniqueConstraint(
            "chat_id", "sender_id", "client_id", name="messages_client_id"
        ),
    )
    op.create_table(
        "users",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("last_cursor", sa.BigInteger(), nullable=False),
        sa.Column("delivered_cursor", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_at_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("user_id"),
    )


def downgrade() -> None:
    op.drop_table("users")
    op.drop_table("messages")
    with op.batch_alter_table("message_media", schema=None) as batch_op:
        batch_op.drop_index("message_media_by_media")

    op.drop_table("message_media")
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_index("members_by_user")

    op.drop_table("members")
    op.drop_table("media_uploads")
    op.drop_table("media")
    op.drop_table("events")
    op.drop_table("devices")
    op.drop_table("chats")
