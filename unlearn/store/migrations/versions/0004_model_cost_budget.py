"""a model may carry its own cost budget for a job's chain of methods; requests may wait in needs_review

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 05:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: a model registered before this revision has no budget of its own and uses the settings'.
    # The new request and target status `needs_review` fits the existing 16-character status columns
    # (no CHECK constraint lists the statuses), so no row needs rewriting.
    with op.batch_alter_table('model', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cost_budget_s', sa.Float(), nullable=True))


def downgrade() -> None:
    # A request or target waiting for review has no status the previous revision knows: refuse, rather
    # than guess whether the operator would have rejected or retried it.
    bind = op.get_bind()
    waiting = bind.execute(sa.text("SELECT count(*) FROM deletionrequest WHERE status = 'needs_review'")).scalar()
    if waiting:
        raise RuntimeError(f"{waiting} request(s) wait in needs_review: decide them before downgrading")
    with op.batch_alter_table('model', schema=None) as batch_op:
        batch_op.drop_column('cost_budget_s')
