"""a version may be stored as a delta against its parent: the stored folder's hash and size

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 14:00:00.000000
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: a version registered before this revision is stored whole, its stored hash its weights_sha256.
    with op.batch_alter_table('modelversion', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stored_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('stored_bytes', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # The previous revision checks a version's folder against weights_sha256 alone: a version stored as a
    # delta would read as corrupt there and be quarantined. Refuse rather than lose versions that way.
    bind = op.get_bind()
    deltas = bind.execute(sa.text("SELECT count(*) FROM modelversion WHERE stored_sha256 IS NOT NULL "
                                  "AND stored_sha256 <> weights_sha256")).scalar()
    if deltas:
        raise RuntimeError(f"{deltas} version(s) are stored as deltas: materialise them "
                           "(unlearn.deltas.materialise) before downgrading")
    with op.batch_alter_table('modelversion', schema=None) as batch_op:
        batch_op.drop_column('stored_bytes')
        batch_op.drop_column('stored_sha256')
