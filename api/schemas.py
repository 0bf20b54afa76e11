"""Response bodies of the v1 API (the OpenAPI schema is built from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from unlearn.intake import Text, text


class JobOut(BaseModel):
    id: str
    model: str
    method: str
    stage: str
    progress: float
    message: str
    attempts: int
    max_attempts: int
    queue: str
    worker: str | None
    error: str | None
    base_version_id: str | None
    result_version_id: str | None
    created_at: datetime
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


class TargetOut(BaseModel):
    model: str
    samples: int
    status: str
    job_id: str | None
    version_id: str | None


class RequestOut(BaseModel):
    id: str
    tenant: str
    external_id: str | None
    model: str | None
    scope: dict[str, Any]
    kind: str
    method: str
    status: str
    reason: str | None
    received_at: datetime
    due_at: datetime
    # The deadline before any extension (None in responses stored before it was recorded).
    original_due_at: datetime | None = None
    days_left: float
    overdue: bool  # still open after its due date
    at_risk: bool  # not started and fewer than the configured days left
    completed_at: datetime | None
    seconds_to_compliance: float | None
    targets: list[TargetOut]
    jobs: list[JobOut]
    verdicts: dict[str, Any]  # version id -> verifier verdict
    links: dict[str, str]


class RequestPage(BaseModel):
    items: list[RequestOut]
    total: int
    page: int
    size: int


class VersionOut(BaseModel):
    id: str
    model: str
    version: int
    parent_id: str | None
    method: str
    status: str
    tainted: bool
    verdict: str | None
    weights_sha256: str
    request_ids: list[str]
    excluded_samples: int
    created_at: datetime
    metrics: dict[str, Any]


class ModelOut(BaseModel):
    name: str
    family: str
    description: str
    champion: VersionOut | None
    versions: int


class RollbackIn(BaseModel):
    version_id: Text
    reason: Text = "operator rollback"


class Health(BaseModel):
    status: str
    database: bool
    version: str


class ReasonIn(BaseModel):
    reason: text(min_length=1, max_length=2000)


class ExtendIn(BaseModel):
    days: int = Field(ge=1, le=60)
    reason: text(min_length=1, max_length=2000)


class ActorOut(BaseModel):
    kind: str  # api-key | worker | service
    display: str  # how a person reads it
    key_id: str | None = None
    tenant: str | None = None
    role: str | None = None
    label: str | None = None
    worker: str | None = None
    task_id: str | None = None


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    actor_detail: ActorOut
    entity_type: str
    entity_id: str
    from_state: str | None
    to_state: str
    reason: str | None
    data: dict[str, Any]


class PublicKeyOut(BaseModel):
    algorithm: str
    key_id: str  # sha256 (hex) of the public key's DER encoding
    public_key_pem: str


class CertificateOut(BaseModel):
    certificate: dict[str, Any]
    algorithm: str
    key_id: str
    signature: str  # base64 Ed25519 over the canonical JSON of `certificate`


class WorkerOut(BaseModel):
    worker: str
    hostname: str
    queues: str
    device: str
    alive: bool
    seconds_since_seen: float
    current_job_id: str | None
    gpu_memory_mb: float | None
    gpu_memory_total_mb: float | None
    seen_at: datetime
    started_at: datetime


class QueueOut(BaseModel):
    queue: str
    depth: int
    oldest_age_s: float | None


class OverviewOut(BaseModel):
    funnel: dict[str, int]  # requests by status
    overdue: int
    at_risk: int
    at_risk_days: int
    queues: list[QueueOut]
    active_jobs: int
    workers_alive: int
    now: datetime


class ComplianceOut(BaseModel):
    id: str
    model: str
    version_id: str
    trigger: str
    passed: bool
    regression: bool
    forgotten: int
    reopened_request_ids: list[str]
    report: dict[str, Any]
    checked_at: datetime


class ComplianceSummary(BaseModel):
    latest: list[ComplianceOut]  # the newest check per model
    regressions: list[ComplianceOut]
    reopened: list[dict[str, Any]]  # request id, model, current status


class LoginIn(BaseModel):
    api_key: text(min_length=1, max_length=256)


class SessionOut(BaseModel):
    tenant: str
    role: str
