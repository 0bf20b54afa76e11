"""Response bodies of the v1 API (the OpenAPI schema is built from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from unlearn.intake import JSONObject, Text, text


class JobOut(BaseModel):
    id: str = Field(description="the job's id")
    model: str = Field(description="the model the job unlearns from")
    method: str = Field(description="the unlearning method it runs (e.g. `retrain`, `ssd`)")
    stage: str = Field(description="queued, unlearning, verifying, promoting, done or failed")
    progress: float = Field(description="fraction done, 0 to 1")
    message: str = Field(description="the method's last progress message")
    attempts: int = Field(description="attempts started so far")
    max_attempts: int = Field(description="attempts allowed before the job fails")
    queue: str = Field(description="the worker queue it runs on (`gpu` or `cpu`)")
    worker: str | None = Field(description="the worker node and task of the current or last attempt")
    error: str | None = Field(description="the last attempt's error, if any")
    base_version_id: str | None = Field(description="the model version it started from")
    result_version_id: str | None = Field(description="the version it produced, once verified")
    created_at: datetime = Field(description="when the job was created (UTC)")
    enqueued_at: datetime | None = Field(description="when it was last sent to the workers")
    started_at: datetime | None = Field(description="when its current or last attempt started")
    finished_at: datetime | None = Field(description="when it finished (done or failed)")


class TargetOut(BaseModel):
    model: str = Field(description="a model the request reaches")
    samples: int = Field(description="training samples to forget in that model")
    status: str = Field(description="pending, needs_review (its job's chain of methods ended without a passing "
                                    "candidate), done, rejected, failed or canceled")
    job_id: str | None = Field(description="the job serving this target")
    version_id: str | None = Field(description="the model version that serves (or rejected) it")


class AttemptOut(BaseModel):
    job_id: str | None = Field(description="the job that made the candidate")
    model: str = Field(description="the model")
    method: str = Field(description="the method that made it")
    version_id: str = Field(description="the model version the candidate became")
    version: int = Field(description="its version number")
    status: str = Field(description="the version's status: promoted (it served the request), rejected, …")
    verdict: str | None = Field(description="pass or fail")
    reasons: list[str] = Field(description="the verifier's reasons for a fail")
    wall_seconds: float | None = Field(description="wall seconds the attempt cost, unlearning and verifying "
                                                   "(null: recorded before attempts were timed)")
    unlearn_seconds: float | None = Field(description="wall seconds of the method alone")
    device: str | None = Field(description="the device it ran on (cpu, cuda:0, …)")
    warning: str | None = Field(None, description="a caveat of this method's step, e.g. that a retrain without "
                                                  "the flagged samples alone may keep a backdoor")


class DecisionIn(BaseModel):
    action: Literal["reject", "retry"] = Field(
        description="reject: end the request `rejected`; retry: queue it again, for a fresh chain of methods")
    reason: text(min_length=1, max_length=2000) = Field(description="why, written to the audit trail",
                                                        examples=["the retrain's recipe is being rebuilt"])
    method: text(max_length=32) | None = Field(
        None, description="retry only: the method to run first (default: the one asked for before)",
        examples=["retrain"])
    params: JSONObject | None = Field(None, description="retry only: that method's parameters",
                                      examples=[{"alpha": 10}])


class RequestOut(BaseModel):
    id: str = Field(description="the request's id")
    tenant: str = Field(description="the tenant that submitted it")
    external_id: str | None = Field(description="the submitter's own reference (a case or ticket number)")
    model: str | None = Field(description="the target model; null: every model trained on the subject")
    scope: dict[str, Any] = Field(
        description="what is forgotten, as stored (a subject's reference is kept only as a salted hash)")
    kind: str = Field(description="privacy (a data subject's erasure) or corrective (bad or poisoned data)")
    method: str = Field(description="the unlearning method asked for (`auto`: the family's choice)")
    status: str = Field(
        description="pending_review, received, queued, running, verifying, needs_review (every method tried "
                    "failed its gate, or the cost budget or deadline stopped the chain: an operator decides), "
                    "completed, rejected (by an operator), failed or canceled")
    reason: str | None = Field(description="why it waits for review, or was rejected, failed, canceled or reviewed")
    received_at: datetime = Field(description="when it was accepted (UTC)")
    due_at: datetime = Field(description="the deadline (UTC), extensions included")
    original_due_at: datetime | None = Field(
        None, description="the deadline before any extension (null in answers stored before it was recorded)")
    days_left: float = Field(description="days until the deadline (negative: overdue)")
    overdue: bool = Field(description="still open after its due date")
    at_risk: bool = Field(description="not started and fewer than the configured days left")
    completed_at: datetime | None = Field(description="when every target was served")
    seconds_to_compliance: float | None = Field(description="seconds from receipt to completion")
    targets: list[TargetOut] = Field(description="one entry per model the request reaches")
    jobs: list[JobOut] = Field(description="the jobs that served it")
    verdicts: dict[str, Any] = Field(
        description="model version id → the verifier's verdict, criteria and reasons")
    attempts: list[AttemptOut] = Field(
        default_factory=list, description="every candidate its jobs made, oldest first: a failed method's "
                                          "candidate, then the next method's")
    links: dict[str, str] = Field(
        description="related resources: self, cancel, audit, and certificate once completed")


class RequestPage(BaseModel):
    items: list[RequestOut] = Field(description="the requests on this page, newest first")
    total: int = Field(description="requests matching the filters")
    page: int = Field(description="this page's number, from 1")
    size: int = Field(description="page size")


class VersionOut(BaseModel):
    id: str = Field(description="the version's id")
    model: str = Field(description="its model")
    version: int = Field(description="its number within the model, from 1")
    parent_id: str | None = Field(description="the version it was derived from")
    method: str = Field(description="how it was made (`train`, `retrain`, a method name)")
    status: str = Field(description="candidate, promoted, rejected, retired or quarantined")
    tainted: bool = Field(description="still holds data a completed request removed from a later version")
    verdict: str | None = Field(description="the verifier's verdict (pass or fail)")
    weights_sha256: str = Field(description="sha256 over the manifest (every file's sha256) of its whole folder, "
                                "the same however it is stored; certificates carry this hash")
    stored_sha256: str | None = Field(description="sha256 over the manifest of what is kept for it: a delta "
                                      "against its parent, or its whole folder (then equal to weights_sha256); "
                                      "null for versions registered before deltas (kept whole)")
    stored_bytes: int | None = Field(description="bytes kept for it (null: registered before this was recorded)")
    request_ids: list[str] = Field(description="the requests it serves")
    excluded_samples: int = Field(description="training samples it has forgotten, in all")
    created_at: datetime = Field(description="when it was registered (UTC)")
    metrics: dict[str, Any] = Field(description="the verifier's report: criteria, values, gates")


class ModelOut(BaseModel):
    name: str = Field(description="the model's name")
    family: str = Field(description="its family (classifier, lm, diffusion, …)")
    description: str = Field(description="what it is")
    champion: VersionOut | None = Field(description="the version that serves now")
    versions: int = Field(description="how many versions it has")


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
    fields: FieldsIn = Field(default_factory=FieldsIn, description="which column of the records holds each field")
    reference: Literal["retrain", "precomputed", "holdout"] = Field(
        "retrain", description="how candidates are verified: an exact retrain by the recipe, a supplied "
                               "reference folder, or never-trained holdout records")
    recipe: JSONObject | None = Field(None, description="how the model was trained (retrain policy); a 'base' "
                                                        "checkpoint path is copied into the registry")
    reference_dir: text(max_length=4096) | None = Field(None, description="the precomputed reference folder")
    judge: text(max_length=4096) | None = Field(None, description="a classifier folder judging a diffusion model")
    analytic_head: bool = Field(False, description="classifier: convert to a frozen backbone plus an analytic "
                                                   "head, so that every request is exact and closed form (ACU)")
    description: text(max_length=1000) = Field("", description="free text shown in listings")


class RecordCounts(BaseModel):
    train: int = Field(description="training records: what deletion requests are resolved against")
    holdout: int = Field(description="records the model never trained on (membership negatives, utility)")
    subjects: int = Field(description="distinct data subjects among the records (hashed)")


class ModelDetail(BaseModel):
    name: str = Field(description="the model's name")
    family: str = Field(description="lm, classifier, diffusion or a plugin family")
    description: str = Field(description="free text given at registration")
    records: RecordCounts = Field(description="what was registered with the model")
    reference_policy: str | None = Field(description="how candidates are verified: retrain, precomputed, holdout "
                                                     "(or none, for a family gated against its teacher)")
    registered: bool = Field(description="registered by a team (True) or built by the project's zoo")
    dataset: str | None = Field(description="the data set the model was trained on ('records': the team's own)")
    champion: VersionOut | None = Field(description="the version that serves now")


class RegisteredOut(ModelDetail):
    created: bool = Field(description="False when the same content was already registered: nothing changed")
    content_sha256: str = Field(description="one hash over the folder's bytes, the records, the policy, the recipe "
                                            "and the options: the same content registers once")
    message: str = Field(description="one line saying what happened")


class UploadOut(BaseModel):
    batch: int | None = Field(None, description="the batch this answer is about (absent when listing)")
    records: int | None = Field(None, description="records in that batch")
    batches: list[int] = Field(description="every batch uploaded so far")
    total: int = Field(description="records in all uploaded batches")


class RollbackIn(BaseModel):
    version_id: Text = Field(description="the version to serve again (an untainted one)",
                             examples=["0f4c2a9e8d7b4c1a9e3f5b6d7c8e9f01"])
    reason: Text = Field("operator rollback", description="why, for the audit trail",
                         examples=["the new champion misclassifies a customer's class"])


class Health(BaseModel):
    status: str = Field(description="`ok`, or `degraded` when the database is unreachable")
    database: bool = Field(description="the database answers")
    version: str = Field(description="the service's version")


class ReasonIn(BaseModel):
    reason: text(min_length=1, max_length=2000) = Field(description="why, written to the audit trail",
                                                        examples=["identity verified by the privacy desk"])


class ExtendIn(BaseModel):
    days: int = Field(ge=1, le=60, description="days to add to the deadline (the total is capped by the "
                                               "settings)",
                      examples=[30])
    reason: text(min_length=1, max_length=2000) = Field(description="why, written to the audit trail",
                                                        examples=["the request is complex: GDPR Art. 12(3)"])


class ActorOut(BaseModel):
    kind: str = Field(description="api-key, worker or service")
    display: str = Field(description="how a person reads it")
    key_id: str | None = Field(None, description="the API key's id (an api-key actor)")
    tenant: str | None = Field(None, description="the key's tenant")
    role: str | None = Field(None, description="the key's role (submitter or operator)")
    label: str | None = Field(
        None, description="who holds the key, as set at `unlearn api-key create --label`")
    worker: str | None = Field(None, description="the worker node (a worker actor)")
    task_id: str | None = Field(None, description="the worker's task id for the attempt")


class AuditOut(BaseModel):
    id: int = Field(description="the event's number")
    at: datetime = Field(description="when (UTC)")
    actor: str = Field(
        description="who, as recorded: `key:<key id>`, `<worker node>:<task id>` or a part of the service")
    actor_detail: ActorOut = Field(description="the actor as a person reads it")
    entity_type: str = Field(description="request, job, version or certificate")
    entity_id: str = Field(description="the entity's id")
    from_state: str | None = Field(description="the state before (null for a creation)")
    to_state: str = Field(description="the state after")
    reason: str | None = Field(description="why, where given")
    data: dict[str, Any] = Field(description="further facts of the event")


class PublicKeyOut(BaseModel):
    algorithm: str = Field(description="the signature algorithm (Ed25519)")
    key_id: str = Field(description="sha256 (hex) of the public key's DER encoding")
    public_key_pem: str = Field(description="the public key, PEM")


class CertificateOut(BaseModel):
    certificate: dict[str, Any] = Field(
        description="the signed statement: request, models, versions, verdicts, times")
    algorithm: str = Field(description="the signature algorithm (Ed25519)")
    key_id: str = Field(description="which key signed it (see GET /v1/keys)")
    signature: str = Field(
        description="base64 Ed25519 signature over the canonical JSON (RFC 8785) of `certificate`")


class WorkerOut(BaseModel):
    worker: str = Field(description="the worker's node name")
    hostname: str = Field(description="the host it runs on")
    queues: str = Field(description="the queues it serves, comma-separated")
    device: str = Field(description="the device it computes on (cpu, cuda:0, …)")
    alive: bool = Field(description="seen within three heartbeat intervals")
    seconds_since_seen: float = Field(description="seconds since its last heartbeat")
    current_job_id: str | None = Field(description="the job it runs now")
    gpu_memory_mb: float | None = Field(description="GPU memory in use, MiB")
    gpu_memory_total_mb: float | None = Field(description="GPU memory in all, MiB")
    seen_at: datetime = Field(description="its last heartbeat (UTC)")
    started_at: datetime = Field(description="when it started (UTC)")


class QueueOut(BaseModel):
    queue: str = Field(description="the queue's name")
    depth: int = Field(description="jobs waiting")
    oldest_age_s: float | None = Field(description="seconds the oldest has waited")


class OverviewOut(BaseModel):
    funnel: dict[str, int] = Field(description="requests by status")
    overdue: int = Field(description="open requests past their deadline")
    at_risk: int = Field(description="requests not started with fewer than `at_risk_days` left")
    at_risk_days: int = Field(description="the at-risk threshold, days")
    queues: list[QueueOut] = Field(description="waiting jobs per queue")
    active_jobs: int = Field(description="jobs being unlearned, verified or promoted")
    workers_alive: int = Field(description="workers seen recently")
    now: datetime = Field(description="the server's time (UTC)")


class ComplianceOut(BaseModel):
    id: str = Field(description="the check's id")
    model: str = Field(description="the model checked")
    version_id: str = Field(description="its champion version at the time")
    trigger: str = Field(description="schedule, operator or promotion")
    passed: bool = Field(description="every forgotten sample still reads as forgotten")
    regression: bool = Field(description="a check that passed before now fails")
    forgotten: int = Field(description="forgotten samples re-checked")
    reopened_request_ids: list[str] = Field(
        description="requests reopened because their data reads as remembered")
    report: dict[str, Any] = Field(description="the verifier's report")
    checked_at: datetime = Field(description="when (UTC)")


class ComplianceSummary(BaseModel):
    latest: list[ComplianceOut] = Field(description="the newest check per model")
    regressions: list[ComplianceOut] = Field(description="checks that found a regression")
    reopened: list[dict[str, Any]] = Field(
        description="requests reopened by a check: request id, model, current status")
    check_interval_s: float = Field(description="seconds between scheduled checks of every model (beat's "
                                                "compliance sweep, or the embedded runtime's)")


class LoginIn(BaseModel):
    api_key: text(min_length=1, max_length=256) = Field(description="an operator's API key",
                                                        examples=["ul_3q9Zk…"])


class SessionOut(BaseModel):
    tenant: str = Field(description="the key's tenant")
    role: str = Field(description="the key's role (submitter or operator)")
