"""requests keep their first due date: extensions are capped from it

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 10:00:00.000000
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable first, filled from due_at, then required. Before this revision nothing recorded where a
    # deadline started, so a request's present due date counts as its first (earlier extensions stay
    # in its audit trail): the cap applies from now on, it never shortens a deadline already granted.
    with op.batch_alter_table('deletionrequest', schema=None) as batch_op:
        batch_op.add_column(sa.Column('original_due_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.execute(sa.text('UPDATE deletionrequest SET original_due_at = due_at'))
    with op.batch_alter_table('deletionrequest', schema=None) as batch_op:
        batch_op.alter_column('original_due_at', existing_type=sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('deletionrequest', schema=None) as batch_op:
        batch_op.drop_column('original_due_at')
