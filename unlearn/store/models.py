"""SQLModel tables: the system of record. Celery messages carry only ids; everything else lives here.

Timestamps are timezone-aware UTC (`utcnow()`), stored the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def json_column() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


def json_list_column() -> Any:
    return Field(default_factory=list, sa_column=Column(JSON, nullable=False))


def _due_at_of_this_row(context: Any) -> datetime:
    """A request written without its first due date has not been extended yet: it is its due date."""
    return context.get_current_parameters()["due_at"]


class Model(SQLModel, table=True):
    """A registered model: a family, a lineage of versions, an alias `champion` that serving reads."""

    name: str = Field(primary_key=True, max_length=64)
    family: str = Field(max_length=32)
    description: str = ""
    thresholds: dict = json_column()  # verifier gates for this model, over the settings' defaults
    # Wall seconds one job's chain of methods may spend on this model (None: the settings' chain_budget_s).
    cost_budget_s: float | None = None
    created_at: datetime = Field(default_factory=utcnow)


class TrainingRecord(SQLModel, table=True):
    """One sample a model was trained on (split "train") or never saw (split "holdout").

    A version holds the model's train samples less its `ModelVersion.excluded_ids`."""

    __table_args__ = (
        UniqueConstraint("model_name", "sample_id"),
        Index("ix_trainingrecord_subject", "model_name", "subject_hash"),
        Index("ix_trainingrecord_subject_any", "subject_hash"),
    )
    id: int | None = Field(default=None, primary_key=True)
    model_name: str = Field(foreign_key="model.name", max_length=64)
    sample_id: str = Field(max_length=128)
    subject_hash: str | None = Field(default=None, max_length=64)
    label: int | None = None
    split: str = Field(default="train", max_length=16)
    caption: str | None = Field(default=None, max_length=512)  # a text-to-image model's caption of the sample


class DeletionRequest(SQLModel, table=True):
    __table_args__ = (Index("ix_request_tenant_status", "tenant", "status"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant: str = Field(max_length=64, index=True)
    external_id: str | None = Field(default=None, max_length=128)
    subject_hash: str | None = Field(default=None, max_length=64)  # salted HMAC; never the raw reference
    model_name: str | None = Field(default=None, max_length=64)  # None: every model trained on the subject
    scope_type: str = Field(max_length=16)  # subject | samples | class | concept
    scope: dict = json_column()  # sample ids / label / concept / labels_known (never the raw subject)
    kind: str = Field(default="privacy", max_length=16)  # privacy | corrective
    method: str = Field(default="auto", max_length=32)
    params: dict = json_column()
    status: str = Field(default="received", max_length=16, index=True)
    reason: str | None = None
    due_at: datetime
    # The deadline as first set: extensions are capped in total from it (GDPR art. 12(3)).
    original_due_at: datetime = Field(default=None, nullable=False,
                                      sa_column_kwargs={"default": _due_at_of_this_row})
    received_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    completed_at: datetime | None = None


class RequestTarget(SQLModel, table=True):
    """One model a request applies to, with the samples to forget there (a subject fans out)."""

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(foreign_key="deletionrequest.id", index=True, max_length=32)
    model_name: str = Field(foreign_key="model.name", max_length=64, index=True)
    forget_ids: list = json_list_column()
    job_id: str | None = Field(default=None, max_length=32, index=True)
    status: str = Field(default="pending", max_length=16)  # pending | done | rejected | failed | canceled
    version_id: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(default_factory=utcnow)


class UnlearningJob(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    model_name: str = Field(foreign_key="model.name", max_length=64, index=True)
    base_version_id: str | None = Field(default=None, max_length=32)  # set when claimed: the champion then
    method: str = Field(max_length=32)
    params: dict = json_column()
    kind: str = Field(default="privacy", max_length=16)
    scope: dict = json_column()  # the coalesced scope (type, label)
    queue: str = Field(default="gpu", max_length=16)
    stage: str = Field(default="queued", max_length=16, index=True)
    progress: float = 0.0
    message: str = ""
    attempts: int = 0
    max_attempts: int = 3
    lease_until: datetime | None = None
    worker: str | None = Field(default=None, max_length=128)
    error: str | None = None
    result_version_id: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(default_factory=utcnow)
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class ModelVersion(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("model_name", "version"),
        # A redelivered job re-registers the same candidate: this makes registration idempotent.
        UniqueConstraint("parent_id", "forget_hash", "method", "params_hash", name="uq_version_lineage"),
    )
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    model_name: str = Field(foreign_key="model.name", max_length=64, index=True)
    version: int
    family: str = Field(max_length=32)
    parent_id: str | None = Field(default=None, max_length=32)
    method: str = Field(max_length=32)
    params: dict = json_column()
    params_hash: str = Field(default="", max_length=64)
    forget_hash: str = Field(default="", max_length=64)
    excluded_ids: list = json_list_column()  # every sample forgotten in this lineage so far
    request_ids: list = json_list_column()  # the requests this version incorporates (itself, not ancestors)
    artifact_path: str
    # weights_sha256: the hash of the whole folder's manifest (what the version loads; the same whichever way
    # it is stored, so certificates compare). stored_sha256: the hash of the manifest of what is kept for it,
    # a delta against its parent (`unlearn.deltas`) or, equal to weights_sha256, the whole folder; None
    # for versions registered before delta storage (stored whole). stored_bytes: the bytes kept.
    weights_sha256: str = Field(default="", max_length=64)
    stored_sha256: str | None = Field(default=None, max_length=64)
    stored_bytes: int | None = Field(default=None, sa_type=BigInteger)
    verdict: str | None = Field(default=None, max_length=8)  # pass | fail
    metrics: dict = json_column()
    method_info: dict = json_column()
    status: str = Field(default="candidate", max_length=16)  # VersionStatus: candidate | promoted | … | quarantined
    tainted: bool = False
    job_id: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(default_factory=utcnow)


class Alias(SQLModel, table=True):
    model_name: str = Field(foreign_key="model.name", primary_key=True, max_length=64)
    alias: str = Field(primary_key=True, max_length=32)
    version_id: str = Field(max_length=32)
    updated_at: datetime = Field(default_factory=utcnow)


class AuditEvent(SQLModel, table=True):
    """Append-only: one row per state change of a request, job, version or alias."""

    __table_args__ = (Index("ix_audit_entity", "entity_type", "entity_id"),)
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow)
    actor: str = Field(max_length=128)
    entity_type: str = Field(max_length=16)  # request | job | version | alias
    entity_id: str = Field(max_length=128)
    from_state: str | None = Field(default=None, max_length=32)
    to_state: str = Field(max_length=32)
    reason: str | None = None
    data: dict = json_column()


class ApiKey(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    key_hash: str = Field(unique=True, max_length=64)
    tenant: str = Field(max_length=64)
    role: str = Field(max_length=16)  # submitter | operator
    # Who holds the key, in the operator's words (`unlearn api-key create --label`): audit trails show it.
    label: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=utcnow)
    revoked: bool = False


class IdempotencyRecord(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("tenant", "key"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    key: str = Field(max_length=255)
    body_sha256: str = Field(max_length=64)
    status_code: int = 202
    response: dict = json_column()
    created_at: datetime = Field(default_factory=utcnow)


class WorkerHeartbeat(SQLModel, table=True):
    """Last sign of life of each worker process (written by the worker every few seconds)."""

    worker: str = Field(primary_key=True, max_length=128)
    hostname: str = Field(default="", max_length=128)
    queues: str = Field(default="", max_length=64)
    device: str = Field(default="cpu", max_length=32)
    current_job_id: str | None = Field(default=None, max_length=32)
    gpu_memory_mb: float | None = None
    gpu_memory_total_mb: float | None = None
    seen_at: datetime = Field(default_factory=utcnow)
    started_at: datetime = Field(default_factory=utcnow)


class ComplianceCheck(SQLModel, table=True):
    """One continuous-compliance re-verification of a champion against everything forgotten so far."""

    __table_args__ = (Index("ix_compliance_model_at", "model_name", "checked_at"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    model_name: str = Field(foreign_key="model.name", max_length=64)
    version_id: str = Field(max_length=32)
    trigger: str = Field(default="schedule", max_length=16)  # schedule | operator
    passed: bool
    regression: bool = False  # failed where the version had passed before
    forgotten: int = 0  # samples re-checked
    report: dict = json_column()
    reopened_request_ids: list = json_list_column()
    checked_at: datetime = Field(default_factory=utcnow)


class Certificate(SQLModel, table=True):
    """The signed deletion certificate issued when a request completes."""

    request_id: str = Field(foreign_key="deletionrequest.id", primary_key=True, max_length=32)
    body: dict = json_column()  # the signed payload
    signature: str  # base64 Ed25519 signature over the canonical JSON of `body`
    key_id: str = Field(max_length=64)
    issued_at: datetime = Field(default_factory=utcnow)
