"""Push addresses of devices, muted chats, and the durable queue of pushes.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "push_jobs",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("queued_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("due_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_until_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "device_id", "chat_id"),
    )
    with op.batch_alter_table("push_jobs", schema=None) as batch_op:
        batch_op.create_index("push_jobs_due", ["due_at_ms"], unique=False)

    op.create_table(
        "push_shown",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "device_id", "chat_id"),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("push_service", sa.String(length=16), nullable=True)
        )
        batch_op.add_column(sa.Column("push_token", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("push_p256dh", sa.String(length=128), nullable=True)
        )
        batch_op.add_column(sa.Column("push_auth", sa.String(length=64), nullable=True))

    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("muted", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_column("muted")

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("push_auth")
        batch_op.drop_column("push_p256dh")
        batch_op.drop_column("push_token")
        batch_op.drop_column("push_service")

    op.drop_table("push_shown")
    with op.batch_alter_table("push_jobs", schema=None) as batch_op:
        batch_op.drop_index("push_jobs_due")

    op.drop_table("push_jobs")
