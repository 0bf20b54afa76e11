"""Certificates, audit trails and operator actions: review, deadlines, retries, compliance checks,
and the read-outs the dashboard is built from (jobs, workers, queues, verifier reports).

No `from __future__ import annotations`: FastAPI reads the dependencies from live annotations.
"""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query
from fastapi.responses import FileResponse
from sqlalchemy import func
from sqlmodel import Session, col, or_, select

from api.auth import Principal
from api.context import ApiContext, known_model, visible_request
from api.problems import ERROR_RESPONSES, ProblemError
from api.schemas import (
    AuditOut,
    CertificateOut,
    ComplianceOut,
    ComplianceSummary,
    ExtendIn,
    JobOut,
    OverviewOut,
    PublicKeyOut,
    QueueOut,
    ReasonIn,
    RequestOut,
    WorkerOut,
)
from api.views import job_out, request_out
from unlearn import certificates
from unlearn.operations import extend_due, retry_job, review_request
from unlearn.registry import RegistryError
from unlearn.sla import at_risk_clause, overdue_clause
from unlearn.store.models import (
    AuditEvent,
    Certificate,
    ComplianceCheck,
    DeletionRequest,
    Model,
    ModelVersion,
    RequestTarget,
    UnlearningJob,
    WorkerHeartbeat,
    utcnow,
)
from unlearn.store.transitions import JOB_ACTIVE, REQUEST_FINAL, REQUEST_TRANSITIONS, IllegalTransition, audit

ALIVE_INTERVALS = 3  # a worker silent for this many heartbeat intervals is reported dead


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def compliance_out(c: ComplianceCheck) -> ComplianceOut:
    return ComplianceOut(id=c.id, model=c.model_name, version_id=c.version_id, trigger=c.trigger, passed=c.passed,
                         regression=c.regression, forgotten=c.forgotten,
                         reopened_request_ids=c.reopened_request_ids, report=c.report, checked_at=c.checked_at)


def audit_trail(session: Session, request_id: str) -> list[AuditEvent]:
    """The request's own events, its certificate's, and those of the jobs and versions that served it."""
    targets = session.exec(select(RequestTarget).where(RequestTarget.request_id == request_id)).all()
    job_ids = {t.job_id for t in targets if t.job_id}
    version_ids = {t.version_id for t in targets if t.version_id}
    clauses = [(AuditEvent.entity_type.in_(("request", "certificate"))) & (AuditEvent.entity_id == request_id)]
    if job_ids:
        clauses.append((AuditEvent.entity_type == "job") & col(AuditEvent.entity_id).in_(job_ids))
    if version_ids:
        clauses.append((AuditEvent.entity_type == "version") & col(AuditEvent.entity_id).in_(version_ids))
    return list(session.exec(select(AuditEvent).where(or_(*clauses))
                             .order_by(col(AuditEvent.at), col(AuditEvent.id))).all())


def _version(session: Session, name: str, version_id: str) -> ModelVersion:
    known_model(session, name)
    v = session.get(ModelVersion, version_id)
    if v is None or v.model_name != name:
        raise ProblemError(404, "Not Found", f"model {name!r} has no version {version_id!r}")
    return v


def add_operator_routes(app: FastAPI, ctx: ApiContext) -> None:
    def get(path: str, **kw: Any) -> Any:
        return app.get(path, responses=ERROR_RESPONSES, **kw)

    def post(path: str, **kw: Any) -> Any:
        return app.post(path, responses=ERROR_RESPONSES, **kw)

    settings = ctx.settings
    Db = Annotated[Session, Depends(ctx.db)]
    Anyone = Annotated[Principal, Depends(ctx.principal)]
    Operator = Annotated[Principal, Depends(ctx.operator)]

    def actor(p: Principal) -> str:
        return f"key:{p.key_id}"

    # ------------------------------------------------------------------ certificates
    @get("/v1/keys", response_model=PublicKeyOut, operation_id="publicKey", tags=["certificates"])
    def public_key() -> PublicKeyOut:
        pem = certificates.public_key_pem(settings)
        return PublicKeyOut(algorithm=certificates.ALGORITHM, key_id=certificates.key_id(pem), public_key_pem=pem)

    @get("/v1/deletion-requests/{request_id}/certificate", response_model=CertificateOut,
                operation_id="getCertificate", tags=["certificates"])
    def get_certificate(request_id: str, session: Db, p: Anyone) -> Any:
        r = visible_request(session, p, request_id)
        row = session.get(Certificate, r.id)
        if row is None:
            raise ProblemError(404, "Not Found", f"no certificate for request {r.id}: it is {r.status}; "
                               "certificates are issued when a request completes")
        return certificates.document(row)

    # ------------------------------------------------------------------ requests
    @get("/v1/deletion-requests/{request_id}/audit", response_model=list[AuditOut],
                operation_id="getRequestAudit", tags=["requests"])
    def request_audit(request_id: str, session: Db, p: Anyone) -> list[AuditOut]:
        r = visible_request(session, p, request_id)
        return [AuditOut(**e.model_dump()) for e in audit_trail(session, r.id)]

    def review(request_id: str, session: Session, p: Principal, approve: bool, reason: str) -> RequestOut:
        r = visible_request(session, p, request_id)
        try:
            review_request(session, r, approve=approve, actor=actor(p), reason=reason)
        except IllegalTransition as exc:
            raise ProblemError(409, "Conflict", str(exc)) from None
        session.commit()
        if approve:
            ctx.poke_coalescer()
        return request_out(session, r, settings.at_risk_days)

    @post("/v1/deletion-requests/{request_id}/approve", response_model=RequestOut,
                 operation_id="approveDeletionRequest", tags=["operator"])
    def approve(request_id: str, body: ReasonIn, session: Db, p: Operator) -> RequestOut:
        return review(request_id, session, p, True, body.reason)

    @post("/v1/deletion-requests/{request_id}/deny", response_model=RequestOut,
                 operation_id="denyDeletionRequest", tags=["operator"])
    def deny(request_id: str, body: ReasonIn, session: Db, p: Operator) -> RequestOut:
        return review(request_id, session, p, False, body.reason)

    @post("/v1/deletion-requests/{request_id}/extend", response_model=RequestOut,
                 operation_id="extendDeletionRequest", tags=["operator"])
    def extend(request_id: str, body: ExtendIn, session: Db, p: Operator) -> RequestOut:
        r = visible_request(session, p, request_id)
        if r.status in REQUEST_FINAL:
            raise ProblemError(409, "Conflict", f"request {r.id} is {r.status}: only open requests have a deadline")
        try:
            extend_due(session, r, days=body.days, actor=actor(p), reason=body.reason)
        except ValueError as exc:
            raise ProblemError(422, "Invalid request", str(exc)) from None
        session.commit()
        return request_out(session, r, settings.at_risk_days)

    # ------------------------------------------------------------------ jobs and workers
    @get("/v1/jobs", response_model=list[JobOut], operation_id="listJobs", tags=["operator"])
    def list_jobs(session: Db, p: Operator,
                  stage: Annotated[list[str] | None, Query()] = None,
                  model: Annotated[str | None, Query(max_length=64)] = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[JobOut]:
        where = []
        if stage:
            where.append(col(UnlearningJob.stage).in_(stage))
        if model:
            where.append(UnlearningJob.model_name == model)
        rows = session.exec(select(UnlearningJob).where(*where)
                            .order_by(col(UnlearningJob.created_at).desc()).limit(limit)).all()
        return [job_out(j) for j in rows]

    @post("/v1/jobs/{job_id}/retry", response_model=JobOut, operation_id="retryJob", tags=["operator"])
    def retry(job_id: str, session: Db, p: Operator) -> JobOut:
        job = session.get(UnlearningJob, job_id)
        if job is None:
            raise ProblemError(404, "Not Found", f"no job {job_id!r}")
        try:
            retry_job(session, job, actor=actor(p))
        except IllegalTransition as exc:
            raise ProblemError(409, "Conflict", f"{exc}; only failed jobs can be retried") from None
        session.commit()
        ctx.enqueue_jobs([job.id])
        return job_out(job)

    @get("/v1/workers", response_model=list[WorkerOut], operation_id="listWorkers", tags=["operator"])
    def list_workers(session: Db, p: Operator) -> list[WorkerOut]:
        now = utcnow()
        out = []
        for w in session.exec(select(WorkerHeartbeat).order_by(WorkerHeartbeat.worker)).all():
            since = (now - _aware(w.seen_at)).total_seconds()
            out.append(WorkerOut(**w.model_dump(), seconds_since_seen=round(since, 1),
                                 alive=since <= ALIVE_INTERVALS * settings.heartbeat_interval_s))
        return out

    @get("/v1/overview", response_model=OverviewOut, operation_id="overview", tags=["operator"])
    def overview(session: Db, p: Operator) -> OverviewOut:
        now = utcnow()
        counts = dict(session.exec(select(DeletionRequest.status, func.count()).group_by(DeletionRequest.status)).all())

        def count(clause: Any) -> int:
            return session.exec(select(func.count()).select_from(DeletionRequest).where(clause)).one()

        queues = []
        for queue, n, oldest in session.exec(
                select(UnlearningJob.queue, func.count(), func.min(func.coalesce(UnlearningJob.enqueued_at,
                                                                                 UnlearningJob.created_at)))
                .where(UnlearningJob.stage == "queued").group_by(UnlearningJob.queue)).all():
            age = (now - _aware(oldest if isinstance(oldest, datetime) else datetime.fromisoformat(oldest)))
            queues.append(QueueOut(queue=queue, depth=n, oldest_age_s=round(age.total_seconds(), 1)))
        alive_since = now - timedelta(seconds=ALIVE_INTERVALS * settings.heartbeat_interval_s)
        return OverviewOut(
            funnel={s: counts.get(s, 0) for s in REQUEST_TRANSITIONS},
            overdue=count(overdue_clause(now)), at_risk=count(at_risk_clause(now, settings.at_risk_days)),
            at_risk_days=settings.at_risk_days, queues=queues,
            active_jobs=session.exec(select(func.count()).select_from(UnlearningJob)
                                     .where(col(UnlearningJob.stage).in_(JOB_ACTIVE))).one(),
            workers_alive=session.exec(select(func.count()).select_from(WorkerHeartbeat)
                                       .where(WorkerHeartbeat.seen_at >= alive_since)).one(),
            now=now)

    # ------------------------------------------------------------------ verifier reports
    @get("/v1/models/{name}/versions/{version_id}/report", operation_id="getVersionReport",
                tags=["models"])
    def version_report(name: str, version_id: str, session: Db, p: Anyone) -> dict[str, Any]:
        v = _version(session, name, version_id)
        report = dict(v.metrics)
        base = f"/v1/models/{name}/versions/{v.id}/report/plots"
        report["plots"] = {k: f"{base}/{k}" for k in (v.metrics.get("plots") or {})}
        return {"model": name, "version_id": v.id, "version": v.version, "method": v.method, "status": v.status,
                "tainted": v.tainted, "report": report}

    @get("/v1/models/{name}/versions/{version_id}/report/plots/{plot}", response_class=FileResponse,
                operation_id="getVersionReportPlot", tags=["models"])
    def version_plot(name: str, version_id: str, plot: str, session: Db, p: Anyone) -> FileResponse:
        v = _version(session, name, version_id)
        path = (v.metrics.get("plots") or {}).get(plot)
        root = settings.resolved_artifact_root.resolve()
        if not isinstance(path, str):
            raise ProblemError(404, "Not Found", f"version {v.id} has no plot {plot!r}")
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(root) or resolved.suffix.lower() != ".png" or not resolved.is_file():
            raise ProblemError(404, "Not Found", f"plot {plot!r} of version {v.id} is not available")
        return FileResponse(resolved, media_type="image/png")

    # ------------------------------------------------------------------ continuous compliance
    @get("/v1/compliance", response_model=ComplianceSummary, operation_id="complianceSummary",
                tags=["operator"])
    def compliance_summary(session: Db, p: Operator) -> ComplianceSummary:
        latest = []
        for m in session.exec(select(Model).order_by(Model.name)).all():
            c = session.exec(select(ComplianceCheck).where(ComplianceCheck.model_name == m.name)
                             .order_by(col(ComplianceCheck.checked_at).desc())).first()
            if c is not None:
                latest.append(compliance_out(c))
        regressions = session.exec(select(ComplianceCheck).where(ComplianceCheck.regression == True)  # noqa: E712
                                   .order_by(col(ComplianceCheck.checked_at).desc()).limit(50)).all()
        reopened = []
        for c in regressions:
            for rid in c.reopened_request_ids:
                r = session.get(DeletionRequest, rid)
                reopened.append({"request_id": rid, "model": c.model_name, "check_id": c.id,
                                 "status": r.status if r else None, "reopened_at": c.checked_at})
        return ComplianceSummary(latest=latest, regressions=[compliance_out(c) for c in regressions],
                                 reopened=reopened)

    @post("/v1/models/{name}/compliance-check", response_model=ComplianceOut,
                 operation_id="runComplianceCheck", tags=["operator"])
    def compliance_check(name: str, session: Db, p: Operator) -> ComplianceOut:
        known_model(session, name)
        try:
            from unlearn.compliance import run_compliance_check
        except ImportError:
            raise ProblemError(501, "Not Implemented", "continuous compliance checks are not available in "
                               "this build") from None
        try:
            check = run_compliance_check(session, settings, name, trigger="operator")
        except RegistryError as exc:
            session.rollback()
            raise ProblemError(409, "Conflict", str(exc)) from None
        audit(session, actor=actor(p), entity_type="compliance", entity_id=check.id,
              to_state="passed" if check.passed else "failed", reason="operator re-ran the compliance check",
              data={"model": name, "version_id": check.version_id, "regression": check.regression})
        session.commit()
        return compliance_out(check)

