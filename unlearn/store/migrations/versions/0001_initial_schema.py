"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-29 03:34:24.135922
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('apikey',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('key_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('tenant', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash')
    )
    op.create_table('auditevent',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('entity_type', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('entity_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('from_state', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('to_state', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('auditevent', schema=None) as batch_op:
        batch_op.create_index('ix_audit_entity', ['entity_type', 'entity_id'], unique=False)

    op.create_table('deletionrequest',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('tenant', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('external_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('subject_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('model_name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('scope_type', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('scope', sa.JSON(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('method', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('due_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('received_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('completed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('deletionrequest', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deletionrequest_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_deletionrequest_tenant'), ['tenant'], unique=False)
        batch_op.create_index('ix_request_tenant_status', ['tenant', 'status'], unique=False)

    op.create_table('idempotencyrecord',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('body_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('response', sa.JSON(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant', 'key')
    )
    op.create_table('model',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('family', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('thresholds', sa.JSON(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('workerheartbeat',
    sa.Column('worker', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('hostname', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('queues', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('device', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('current_job_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('gpu_memory_mb', sa.Float(), nullable=True),
    sa.Column('gpu_memory_total_mb', sa.Float(), nullable=True),
    sa.Column('seen_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('worker')
    )
    op.create_table('alias',
    sa.Column('model_name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('alias', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('version_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['model_name'], ['model.name'], ),
    sa.PrimaryKeyConstraint('model_name', 'alias')
    )
    op.create_table('certificate',
    sa.Column('request_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.Column('signature', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('key_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('issued_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['deletionrequest.id'], ),
    sa.PrimaryKeyConstraint('request_id')
    )
    op.create_table('compliancecheck',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('model_name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('version_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('trigger', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('passed', sa.Boolean(), nullable=False),
    sa.Column('regression', sa.Boolean(), nullable=False),
    sa.Column('forgotten', sa.Integer(), nullable=False),
    sa.Column('report', sa.JSON(), nullable=False),
    sa.Column('reopened_request_ids', sa.JSON(), nullable=False),
    sa.Column('checked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['model_name'], ['model.name'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('compliancecheck', schema=None) as batch_op:
        batch_op.create_index('ix_compliance_model_at', ['model_name', 'checked_at'], unique=False)

    op.create_table('modelversion',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('model_name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('family', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('parent_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('method', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('params_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('forget_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('excluded_ids', sa.JSON(), nullable=False),
    sa.Column('request_ids', sa.JSON(), nullable=False),
    sa.Column('artifact_path', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('weights_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('verdict', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('method_info', sa.JSON(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('tainted', sa.Boolean(), nullable=False),
    sa.Column('job_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['model_name'], ['model.name'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('model_name', 'version'),
    sa.UniqueConstraint('parent_id', 'forget_hash', 'method', 'params_hash', name='uq_version_lineage')
    )
    with op.batch_alter_table('modelversion', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_modelversion_model_name'), ['model_name'], unique=False)

    op.create_table('requesttarget',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('request_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('model_name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('forget_ids', sa.JSON(), nullable=False),
    sa.Column('job_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('version_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['model_name'], ['model.name'], ),
    sa.ForeignKeyConstraint(['request_id'], ['deletionrequest.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('requesttarget', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_requesttarget_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_requesttarget_model_name'), ['model_name'], unique=False)
        batch_op.create_index(batch_op.f('ix_requesttarget_request_id'), ['request_id'], unique=False)

    op.create_table('trainingrecord',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('sample_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('subject_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('label', sa.Integer(), nullable=True),
    sa.Column('split', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.ForeignKeyConstraint(['model_name'], ['model.name'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('model_name', 'sample_id')
    )
    with op.batch_alter_table('trainingrecord', schema=None) as batch_op:
        batch_op.create_index('ix_trainingrecord_subject', ['model_name', 'subject_hash'], unique=False)
        batch_op.create_index('ix_trainingrecord_subject_any', ['subject_hash'], unique=False)

    op.create_table('unlearningjob',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('model_name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('base_version_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('method', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('scope', sa.JSON(), nullable=False),
    sa.Column('queue', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('stage', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('progress', sa.Float(), nullable=False),
    sa.Column('message', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('lease_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('worker', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('result_version_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('enqueued_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('finished_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['model_name'], ['model.name'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('unlearningjob', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_unlearningjob_model_name'), ['model_name'], unique=False)
        batch_op.create_index(batch_op.f('ix_unlearningjob_stage'), ['stage'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('unlearningjob', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_unlearningjob_stage'))
        batch_op.drop_index(batch_op.f('ix_unlearningjob_model_name'))

    op.drop_table('unlearningjob')
    with op.batch_alter_table('trainingrecord', schema=None) as batch_op:
        batch_op.drop_index('ix_trainingrecord_subject_any')
        batch_op.drop_index('ix_trainingrecord_subject')

    op.drop_table('trainingrecord')
    with op.batch_alter_table('requesttarget', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_requesttarget_request_id'))
        batch_op.drop_index(batch_op.f('ix_requesttarget_model_name'))
        batch_op.drop_index(batch_op.f('ix_requesttarget_job_id'))

    op.drop_table('requesttarget')
    with op.batch_alter_table('modelversion', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_modelversion_model_name'))

    op.drop_table('modelversion')
    with op.batch_alter_table('compliancecheck', schema=None) as batch_op:
        batch_op.drop_index('ix_compliance_model_at')

    op.drop_table('compliancecheck')
    op.drop_table('certificate')
    op.drop_table('alias')
    op.drop_table('workerheartbeat')
    op.drop_table('model')
    op.drop_table('idempotencyrecord')
    with op.batch_alter_table('deletionrequest', schema=None) as batch_op:
        batch_op.drop_index('ix_request_tenant_status')
        batch_op.drop_index(batch_op.f('ix_deletionrequest_tenant'))
        batch_op.drop_index(batch_op.f('ix_deletionrequest_status'))

    op.drop_table('deletionrequest')
    with op.batch_alter_table('auditevent', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_entity')

    op.drop_table('auditevent')
    op.drop_table('apikey')

