"""import rules: a disbursement's date is required only once it is paid or failed

A stage approved (`ditetapkan`) or at the bank (`diproses`) often has no date yet; the
ministry's exports leave it empty. `disbursements.date` becomes nullable, and a check
keeps it required for `disalurkan` and `gagal`.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

DATE_RULE = "date IS NOT NULL OR status IN ('ditetapkan', 'diproses')"


def upgrade() -> None:
    # batch: SQLite cannot alter a column in place (the table is copied); PostgreSQL alters.
    with op.batch_alter_table("disbursements", schema=None) as batch_op:
        batch_op.alter_column("date", existing_type=sa.Date(), nullable=True)
        batch_op.create_check_constraint(batch_op.f("ck_disbursements_date_when_paid"), DATE_RULE)


def downgrade() -> None:
    # The old schema cannot hold "no date yet": such rows get the day they were last
    # imported (only `disalurkan` rows show their date, so nobody is told a wrong payday).
    day = "date(updated_at)" if op.get_context().dialect.name == "sqlite" else "updated_at::date"
    op.execute(f"UPDATE disbursements SET date = {day} WHERE date IS NULL")
    with op.batch_alter_table("disbursements", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_disbursements_date_when_paid"), type_="check")
        batch_op.alter_column("date", existing_type=sa.Date(), nullable=False)
