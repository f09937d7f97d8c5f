"""trust: activation codes, outbox notices, KKS-only redemption allowance

Families without a phone in the registry link with a one-time activation code; notices
to one person (an unlinked family, a removed agent) wait in an outbox for the worker;
each BPNT wallet counts its redemptions by KKS number alone per month.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = models.base.UtcDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "activation_codes",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("beneficiary_id", ID, nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=False),
        sa.Column("voided_at", UTC_TIME, nullable=True),
        sa.Column("used_at", UTC_TIME, nullable=True),
        sa.Column("used_by", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["beneficiary_id"],
            ["beneficiaries.id"],
            name=op.f("fk_activation_codes_beneficiary_id_beneficiaries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activation_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_activation_codes_code_hash")),
    )
    with op.batch_alter_table("activation_codes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_activation_codes_beneficiary_id"), ["beneficiary_id"], unique=False
        )
    op.create_table(
        "outbox_notices",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("telegram_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sent_at", UTC_TIME, nullable=True),
        sa.Column("failed", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_notices")),
    )
    with op.batch_alter_table("outbox_notices", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_notices_pending", ["sent_at", "id"], unique=False)
    with op.batch_alter_table("bpnt_wallets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kks_month", sa.String(length=7), nullable=True))
        batch_op.add_column(
            sa.Column("kks_count", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("bpnt_wallets", schema=None) as batch_op:
        batch_op.drop_column("kks_count")
        batch_op.drop_column("kks_month")
    with op.batch_alter_table("outbox_notices", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_notices_pending")
    op.drop_table("outbox_notices")
    with op.batch_alter_table("activation_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_activation_codes_beneficiary_id"))
    op.drop_table("activation_codes")
