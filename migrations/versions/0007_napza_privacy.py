"""napza privacy: erasure and retention from last activity

`help_requests.requester_telegram_id` becomes nullable (an erased requester's id is
set NULL), and `help_requests.last_activity_at` is added, filled from the latest of
the request's own timestamps, its offers and its relayed messages.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Every candidate is COALESCEd to created_at (never NULL): SQLite's scalar max() is
# NULL when any argument is, PostgreSQL's GREATEST ignores NULLs; this works on both.
_CANDIDATES = (
    "created_at",
    "COALESCE(offered_at, created_at)",
    "COALESCE(accepted_at, created_at)",
    "COALESCE(closed_at, created_at)",
    "COALESCE((SELECT MAX(o.ended_at) FROM help_request_offers o"
    " WHERE o.request_id = help_requests.id), created_at)",
    "COALESCE((SELECT MAX(r.created_at) FROM relay_messages r"
    " WHERE r.request_id = help_requests.id), created_at)",
)


def upgrade() -> None:
    with op.batch_alter_table("help_requests", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("last_activity_at", models.base.UtcDateTime(timezone=True), nullable=True)
        )
    greatest = "GREATEST" if op.get_bind().dialect.name == "postgresql" else "MAX"
    op.execute(f"UPDATE help_requests SET last_activity_at = {greatest}({', '.join(_CANDIDATES)})")
    with op.batch_alter_table("help_requests", schema=None) as batch_op:
        batch_op.alter_column(
            "last_activity_at",
            existing_type=models.base.UtcDateTime(timezone=True),
            nullable=False,
        )
        batch_op.alter_column("requester_telegram_id", existing_type=sa.BigInteger(), nullable=True)
        batch_op.create_index(
            "ix_help_requests_status_last_activity_at",
            ["status", "last_activity_at"],
            unique=False,
        )


def downgrade() -> None:
    # An erased requester cannot be given back: 0 is no Telegram user, so the old code
    # sends nothing anywhere for those requests.
    op.execute(
        "UPDATE help_requests SET requester_telegram_id = 0 WHERE requester_telegram_id IS NULL"
    )
    with op.batch_alter_table("help_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_help_requests_status_last_activity_at")
        batch_op.alter_column(
            "requester_telegram_id", existing_type=sa.BigInteger(), nullable=False
        )
        batch_op.drop_column("last_activity_at")
