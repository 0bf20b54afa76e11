"""Rows of the store as the API's response bodies."""

from __future__ import annotations

from sqlmodel import Session, col, select

from api.schemas import (
    ActorOut,
    AttemptOut,
    AuditOut,
    ComplianceOut,
    JobOut,
    RequestOut,
    TargetOut,
    VersionOut,
)
from unlearn.registry import job_attempts, request_job_ids
from unlearn.sla import flags
from unlearn.store.models import (
    ApiKey,
    AuditEvent,
    ComplianceCheck,
    DeletionRequest,
    ModelVersion,
    RequestTarget,
    UnlearningJob,
    utcnow,
)
from unlearn.store.states import RequestStatus


def version_out(v: ModelVersion) -> VersionOut:
    return VersionOut(id=v.id, model=v.model_name, version=v.version, parent_id=v.parent_id, method=v.method,
                      status=v.status, tainted=v.tainted, verdict=v.verdict, weights_sha256=v.weights_sha256,
                      stored_sha256=v.stored_sha256, stored_bytes=v.stored_bytes,
                      request_ids=v.request_ids, excluded_samples=len(v.excluded_ids), created_at=v.created_at,
                      metrics=v.metrics)


def job_out(j: UnlearningJob) -> JobOut:
    return JobOut(id=j.id, model=j.model_name, method=j.method, stage=j.stage, progress=j.progress,
                  message=j.message, attempts=j.attempts, max_attempts=j.max_attempts, queue=j.queue,
                  worker=j.worker, error=j.error, base_version_id=j.base_version_id,
                  result_version_id=j.result_version_id, created_at=j.created_at, enqueued_at=j.enqueued_at,
                  started_at=j.started_at, finished_at=j.finished_at)


def request_out(session: Session, r: DeletionRequest, at_risk_days: float,
                targets: list[RequestTarget] | None = None, *, new: bool = False) -> RequestOut:
    """`r` as the API shows it. `new`: `r` and its `targets` were just made and no job has touched them,
    so there are no jobs, verdicts or attempts to look up (and no query is made)."""
    if targets is None:
        targets = session.exec(select(RequestTarget).where(RequestTarget.request_id == r.id)).all()
    job_ids = sorted({t.job_id for t in targets if t.job_id})
    jobs = session.exec(select(UnlearningJob).where(col(UnlearningJob.id).in_(job_ids))).all() if job_ids else []
    verdicts = {}
    for t in targets:
        if t.version_id and (v := session.get(ModelVersion, t.version_id)) is not None and v.metrics:
            verdicts[v.id] = {k: v.metrics.get(k) for k in ("verdict", "criteria", "reasons", "info", "method",
                                                            "reference_policy", "exact_by_construction")}
    now = utcnow()
    overdue, at_risk = flags(r, now, at_risk_days)
    base = f"/v1/deletion-requests/{r.id}"
    links = {"self": base, "cancel": f"{base}/cancel", "audit": f"{base}/audit"}
    if r.status == RequestStatus.NEEDS_REVIEW:
        links["decision"] = f"{base}/decision"
    if r.status == RequestStatus.COMPLETED:
        links["certificate"] = f"{base}/certificate"
    return RequestOut(
        id=r.id, tenant=r.tenant, external_id=r.external_id, model=r.model_name, scope=r.scope, kind=r.kind,
        method=r.method, status=r.status, reason=r.reason, received_at=r.received_at, due_at=r.due_at,
        days_left=round((r.due_at - now).total_seconds() / 86400, 2), overdue=overdue, at_risk=at_risk,
        original_due_at=r.original_due_at, completed_at=r.completed_at,
        seconds_to_compliance=(r.completed_at - r.received_at).total_seconds() if r.completed_at else None,
        targets=[TargetOut(model=t.model_name, samples=len(t.forget_ids), status=t.status, job_id=t.job_id,
                           version_id=t.version_id) for t in targets],
        jobs=[job_out(j) for j in jobs], verdicts=verdicts, links=links,
        attempts=[] if new else [AttemptOut(**a) for a in job_attempts(session, request_job_ids(session, r.id))])


def compliance_out(c: ComplianceCheck) -> ComplianceOut:
    return ComplianceOut(id=c.id, model=c.model_name, version_id=c.version_id, trigger=c.trigger, passed=c.passed,
                         regression=c.regression, forgotten=c.forgotten,
                         reopened_request_ids=c.reopened_request_ids, report=c.report, checked_at=c.checked_at)


def actor_out(session: Session, actor: str, keys: dict[str, ApiKey | None] | None = None,
              viewer_tenant: str | None = None) -> ActorOut:
    """An audit actor as a person reads it. `key:<id>` (a caller's API key) names the key's label, tenant
    and role; `<worker node>:<task id>` (a job's attempt) names the worker; any other is the service's
    own part (coalescer, compliance, …). `keys` caches the key rows read for one trail. With
    `viewer_tenant` (a submitter reads), another tenant's key (an operator's) is named by its role only."""
    keys = {} if keys is None else keys
    if actor.startswith("key:"):
        key_id = actor[4:]
        if key_id not in keys:
            keys[key_id] = session.get(ApiKey, key_id)
        key = keys[key_id]
        if key is None:
            return ActorOut(kind="api-key", display=f"deleted API key {key_id[:8]}", key_id=key_id)
        if viewer_tenant is not None and key.tenant != viewer_tenant:
            article = "an" if key.role[:1] in ("a", "e", "i", "o", "u") else "a"
            return ActorOut(kind="api-key", display=f"{article} {key.role}", key_id=key_id, role=key.role)
        who = key.label or f"{key.role} key {key_id[:8]}"
        return ActorOut(kind="api-key", display=f"{who} ({key.role}, tenant {key.tenant})", key_id=key_id,
                        tenant=key.tenant, role=key.role, label=key.label)
    node, sep, task = actor.rpartition(":")
    if sep and ("@" in node or (len(task) == 36 and task.count("-") == 4)):  # node name@host : task uuid
        return ActorOut(kind="worker", display=f"worker {node}", worker=node, task_id=task)
    if "@" in actor:
        return ActorOut(kind="worker", display=f"worker {actor}", worker=actor)
    return ActorOut(kind="service", display=actor)


def audit_out(session: Session, events: list[AuditEvent], viewer_tenant: str | None = None) -> list[AuditOut]:
    """`viewer_tenant`: the submitter's tenant when a submitter reads (None for an operator)."""
    keys: dict[str, ApiKey | None] = {}
    return [AuditOut(**e.model_dump(), actor_detail=actor_out(session, e.actor, keys, viewer_tenant))
            for e in events]
