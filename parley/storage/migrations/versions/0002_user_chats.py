"""Chats by user, so that a user's chat list is read from one shard.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_chats",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("joined_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "chat_id"),
    )
    op.execute(
        "INSERT INTO user_chats (user_id, chat_id, joined_at_ms) "
        "SELECT user_id, chat_id, joined_at_ms FROM members"
    )
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("members_by_user"))

    with op.batch_alter_table("message_media", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("message_media_by_media"))
        batch_op.create_index(
            "message_media_in_chat", ["chat_id", "media_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("message_media", schema=None) as batch_op:
        batch_op.drop_index("message_media_in_chat")
        batch_op.create_index(
            batch_op.f("message_media_by_media"), ["media_id"], unique=False
        )

    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("members_by_user"), ["user_id", "chat_id"], unique=False
        )

    op.drop_table("user_chats")
