"""Response bodies of the v1 API (the OpenAPI schema is built from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from unlearn.intake import JSONObject, Text, text


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


ColumnName = text(min_length=1, max_length=128)


class FieldsIn(BaseModel):
    """Which column of the team's records holds each field (absent: the records have no such column)."""

    model_config = ConfigDict(extra="forbid")

    id: ColumnName = Field("id", description="the record id, unique across train and holdout")
    subject: ColumnName | None = Field(None, description="the data subject; hashed at import, never stored")
    split: ColumnName | None = Field(None, description="'train' or 'holdout' per row")
    label: ColumnName | None = Field(None, description="the class label (classifier, diffusion)")
    text: ColumnName | None = Field(None, description="the training text (lm)")
    question: ColumnName | None = Field(None, description="a question about the text (lm, optional)")
    answer: ColumnName | None = Field(None, description="its answer (lm, optional)")
    prompt: ColumnName | None = Field(None, description="a prompt or caption (diffusion)")
    image: ColumnName | None = Field(None, description="an image: a path, bytes or an array")


class FieldsQuery(FieldsIn):
    """The same field names as query parameters, beside the upload's own (batch, split)."""

    model_config = ConfigDict(extra="ignore")


class ModelIn(BaseModel):
    """A team's model to register. Paths are on the service's machines (a shared or mounted volume)."""

    model_config = ConfigDict(extra="forbid")

    name: text(max_length=64) = Field(description="the model's name: lowercase letters, digits, '.', '_', '-'",
                                      examples=["support-lm"])
    family: text(max_length=32) = Field(description="lm, classifier, diffusion or a plugin family",
                                        examples=["lm"])
    path: text(max_length=4096) = Field(description="the model folder (save_pretrained output)")
    records: text(max_length=4096) | None = Field(
        None, description="training records file or folder; omit to use the batches uploaded to "
                          "POST /v1/models/{name}/records")
    holdout: text(max_length=4096) | None = Field(None, description="records the model never trained on")
    fields: FieldsIn = Field(default_factory=FieldsIn)
    reference: Literal["retrain", "precomputed", "holdout"] = Field(
        "retrain", description="how candidates are verified: an exact retrain by the recipe, a supplied "
                               "reference folder, or never-trained holdout records")
    recipe: JSONObject | None = Field(None, description="how the model was trained (retrain policy); a 'base' "
                                                        "checkpoint path is copied into the registry")
    reference_dir: text(max_length=4096) | None = Field(None, description="the precomputed reference folder")
    judge: text(max_length=4096) | None = Field(None, description="a classifier folder judging a diffusion model")
    analytic_head: bool = Field(False, description="classifier: convert to a frozen backbone plus an analytic "
                                                   "head, so that every request is exact and closed form (ACU)")
    description: text(max_length=1000) = ""


class RecordCounts(BaseModel):
    train: int
    holdout: int
    subjects: int


class ModelDetail(BaseModel):
    name: str
    family: str
    description: str
    records: RecordCounts
    reference_policy: str | None
    registered: bool = Field(description="registered by a team (True) or built by the project's zoo")
    dataset: str | None
    champion: VersionOut | None


class RegisteredOut(ModelDetail):
    created: bool = Field(description="False when the same content was already registered: nothing changed")
    content_sha256: str
    message: str


class UploadOut(BaseModel):
    batch: int | None = None
    records: int | None = None
    batches: list[int] = Field(description="every batch uploaded so far")
    total: int = Field(description="records in all uploaded batches")


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


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
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
