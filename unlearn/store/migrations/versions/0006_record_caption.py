"""training records may carry a caption (text-to-image models: concept requests match it)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 14:00:00.000000
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: records of every model registered so far have no text.
    with op.batch_alter_table('trainingrecord', schema=None) as batch_op:
        batch_op.add_column(sa.Column('caption', sqlmodel.sql.sqltypes.AutoString(length=512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('trainingrecord', schema=None) as batch_op:
        batch_op.drop_column('caption')
