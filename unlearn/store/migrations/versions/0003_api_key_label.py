"""API keys carry a label: who holds the key, shown in audit trails

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 02:00:00.000000
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: keys created before this revision have no label (the audit trail names their tenant and role).
    with op.batch_alter_table('apikey', schema=None) as batch_op:
        batch_op.add_column(sa.Column('label', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('apikey', schema=None) as batch_op:
        batch_op.drop_column('label')
