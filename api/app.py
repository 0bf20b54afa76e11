"""FastAPI application: deletion requests in, status and models out. `create_app(settings)`.

No `from __future__ import annotations` here: FastAPI resolves the dependencies declared in
`create_app`'s closure from live annotations.
"""


import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

import unlearn
from api import problems
from api.auth import KeyCache, Principal, RateLimiter, api_key_header, authenticate
from api.problems import ERROR_RESPONSES, ProblemError
from api.schemas import (
    Health,
    JobOut,
    ModelOut,
    RequestOut,
    RequestPage,
    RollbackIn,
    TargetOut,
    VersionOut,
)
from unlearn import registry
from unlearn.intake import DeletionRequestIn, IntakeError, submit
from unlearn.metrics import render_metrics
from unlearn.operations import cancel_request
from unlearn.settings import Settings
from unlearn.store.db import get_engine
from unlearn.store.models import (
    DeletionRequest,
    IdempotencyRecord,
    Model,
    ModelVersion,
    RequestTarget,
    UnlearningJob,
    utcnow,
)
from unlearn.store.transitions import IllegalTransition

REQUEST_STATUSES = ("received", "queued", "running", "verifying", "completed", "rejected", "failed", "canceled")


def version_out(v: ModelVersion) -> VersionOut:
    return VersionOut(id=v.id, model=v.model_name, version=v.version, parent_id=v.parent_id, method=v.method,
                      status=v.status, tainted=v.tainted, verdict=v.verdict, weights_sha256=v.weights_sha256,
                      request_ids=v.request_ids, excluded_samples=len(v.excluded_ids), created_at=v.created_at,
                      metrics=v.metrics)


def job_out(j: UnlearningJob) -> JobOut:
    return JobOut(id=j.id, model=j.model_name, method=j.method, stage=j.stage, progress=j.progress,
                  message=j.message, attempts=j.attempts, worker=j.worker, error=j.error,
                  base_version_id=j.base_version_id, result_version_id=j.result_version_id,
                  created_at=j.created_at, finished_at=j.finished_at)


def request_out(session: Session, r: DeletionRequest, targets: list[RequestTarget] | None = None) -> RequestOut:
    if targets is None:
        targets = session.exec(select(RequestTarget).where(RequestTarget.request_id == r.id)).all()
    job_ids = sorted({t.job_id for t in targets if t.job_id})
    jobs = session.exec(select(UnlearningJob).where(col(UnlearningJob.id).in_(job_ids))).all() if job_ids else []
    verdicts = {}
    for t in targets:
        if t.version_id and (v := session.get(ModelVersion, t.version_id)) is not None and v.metrics:
            verdicts[v.id] = {k: v.metrics.get(k) for k in ("verdict", "criteria", "reasons", "info")}
    now = utcnow()
    return RequestOut(
        id=r.id, tenant=r.tenant, external_id=r.external_id, model=r.model_name, scope=r.scope, kind=r.kind,
        method=r.method, status=r.status, reason=r.reason, received_at=r.received_at, due_at=r.due_at,
        days_left=round((r.due_at - now).total_seconds() / 86400, 2), completed_at=r.completed_at,
        seconds_to_compliance=(r.completed_at - r.received_at).total_seconds() if r.completed_at else None,
        targets=[TargetOut(model=t.model_name, samples=len(t.forget_ids), status=t.status, job_id=t.job_id,
                           version_id=t.version_id) for t in targets],
        jobs=[job_out(j) for j in jobs], verdicts=verdicts,
        links={"self": f"/v1/deletion-requests/{r.id}", "cancel": f"/v1/deletion-requests/{r.id}/cancel"})


class CoalesceScheduler:
    """Ask for one coalescing run per batch window, however many requests arrive in it.

    The run is due when the window closes and takes every pending request (force), so a
    request that arrived inside the window, and so asked for no run of its own, joins it."""

    def __init__(self, send: Callable[[float], None], window_s: float) -> None:
        self.send, self.window_s, self._next = send, window_s, 0.0
        self._lock = threading.Lock()

    def poke(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                return
            self._next = now + self.window_s
        self.send(self.window_s)


def create_app(settings: Settings, *, schedule_coalesce: Callable[[float], None] | None = None) -> FastAPI:
    """`schedule_coalesce(delay_s)` asks the workers to batch pending requests after `delay_s`."""
    settings.register_plugins()
    url = settings.resolved_database_url
    engine = get_engine(url)
    limiter = RateLimiter(settings.rate_limit_per_minute)
    keys = KeyCache()
    scheduler = CoalesceScheduler(schedule_coalesce or (lambda _d: None), settings.batch_window_s)

    app = FastAPI(title="unlearn", version=unlearn.__version__,
                  description="Deletion requests for trained models: forget, verify, promote, audit.")
    problems.install(app)
    app.state.settings = settings

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_body_bytes):
            return problems.problem_response(request, 413, "Payload Too Large",
                                             f"request bodies are limited to {settings.max_body_bytes} bytes")
        return await call_next(request)

    def db() -> Iterator[Session]:
        with Session(engine, expire_on_commit=False) as s:
            yield s

    def principal(request: Request, session: Annotated[Session, Depends(db)],
                  key: Annotated[str | None, Depends(api_key_header)]) -> Principal:
        p = authenticate(session, request, key, keys)
        limiter.check(p.key_id)
        return p

    def operator(p: Annotated[Principal, Depends(principal)]) -> Principal:
        if not p.is_operator:
            raise ProblemError(403, "Forbidden", "this action needs an operator key")
        return p

    def visible_request(session: Session, p: Principal, request_id: str) -> DeletionRequest:
        r = session.get(DeletionRequest, request_id)
        if r is None or (not p.is_operator and r.tenant != p.tenant):  # other tenants' requests do not exist
            raise ProblemError(404, "Not Found", f"no deletion request {request_id!r}")
        return r

    # ------------------------------------------------------------------ requests
    @app.post("/v1/deletion-requests", status_code=202, response_model=RequestOut, responses=ERROR_RESPONSES,
              operation_id="createDeletionRequest", tags=["requests"],
              openapi_extra={"responses": {"202": {"links": {"GetRequest": {
                  "operationId": "getDeletionRequest", "parameters": {"request_id": "$response.body#/id"}}}}}})
    def create_request(body: DeletionRequestIn, response: Response, session: Annotated[Session, Depends(db)],
                       p: Annotated[Principal, Depends(principal)],
                       idempotency_key: Annotated[str | None, Header(max_length=255)] = None) -> Any:
        if not idempotency_key:
            raise ProblemError(400, "Missing Idempotency-Key",
                               "POST /v1/deletion-requests requires an Idempotency-Key header")
        digest = hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
        prior = session.exec(select(IdempotencyRecord).where(IdempotencyRecord.tenant == p.tenant,
                                                             IdempotencyRecord.key == idempotency_key)).first()
        if prior is not None:
            if prior.body_sha256 != digest:
                raise ProblemError(422, "Idempotency-Key reused",
                                   "this Idempotency-Key was used with a different request body")
            response.headers["Location"] = f"/v1/deletion-requests/{prior.response['id']}"
            response.headers["Idempotent-Replayed"] = "true"
            return prior.response
        try:
            req, targets = submit(session, settings, p.tenant, body, actor=f"key:{p.key_id}")
            session.flush()
            out = request_out(session, req, targets)
            session.add(IdempotencyRecord(tenant=p.tenant, key=idempotency_key, body_sha256=digest,
                                          status_code=202, response=json.loads(out.model_dump_json())))
            session.commit()
        except IntakeError as exc:
            session.rollback()
            raise ProblemError(exc.status, exc.title, exc.detail) from None
        except IntegrityError:  # the same key raced in from another connection
            session.rollback()
            raise ProblemError(409, "Conflict", "a request with this Idempotency-Key is being processed") from None
        scheduler.poke()
        response.headers["Location"] = f"/v1/deletion-requests/{req.id}"
        return out

    @app.get("/v1/deletion-requests", response_model=RequestPage, responses=ERROR_RESPONSES,
             operation_id="listDeletionRequests", tags=["requests"])
    def list_requests(session: Annotated[Session, Depends(db)], p: Annotated[Principal, Depends(principal)],
                      status: Annotated[list[str] | None, Query()] = None,
                      page: Annotated[int, Query(ge=1, le=100_000)] = 1,
                      size: Annotated[int, Query(ge=1, le=200)] = 50) -> RequestPage:
        bad = [s for s in status or [] if s not in REQUEST_STATUSES]
        if bad:
            raise ProblemError(422, "Invalid request", f"unknown status {bad[0]!r}; one of {', '.join(REQUEST_STATUSES)}")
        where = []
        if not p.is_operator:
            where.append(DeletionRequest.tenant == p.tenant)
        if status:
            where.append(col(DeletionRequest.status).in_(status))
        total = session.exec(select(func.count()).select_from(DeletionRequest).where(*where)).one()
        rows = session.exec(select(DeletionRequest).where(*where)
                            .order_by(col(DeletionRequest.received_at).desc(), col(DeletionRequest.id))
                            .offset((page - 1) * size).limit(size)).all()
        return RequestPage(items=[request_out(session, r) for r in rows], total=total, page=page, size=size)

    @app.get("/v1/deletion-requests/{request_id}", response_model=RequestOut, responses=ERROR_RESPONSES,
             operation_id="getDeletionRequest", tags=["requests"])
    def get_request(request_id: str, session: Annotated[Session, Depends(db)],
                    p: Annotated[Principal, Depends(principal)]) -> RequestOut:
        return request_out(session, visible_request(session, p, request_id))

    @app.post("/v1/deletion-requests/{request_id}/cancel", response_model=RequestOut, responses=ERROR_RESPONSES,
              operation_id="cancelDeletionRequest", tags=["requests"])
    def cancel(request_id: str, session: Annotated[Session, Depends(db)],
               p: Annotated[Principal, Depends(operator)]) -> RequestOut:
        r = visible_request(session, p, request_id)
        try:
            cancel_request(session, r, actor=f"key:{p.key_id}")
        except IllegalTransition as exc:
            raise ProblemError(409, "Conflict", str(exc)) from None
        session.commit()
        return request_out(session, r)

    # ------------------------------------------------------------------ models
    @app.get("/v1/models", response_model=list[ModelOut], responses=ERROR_RESPONSES, operation_id="listModels",
             tags=["models"])
    def list_models(session: Annotated[Session, Depends(db)],
                    p: Annotated[Principal, Depends(principal)]) -> list[ModelOut]:
        out = []
        for m in session.exec(select(Model).order_by(Model.name)).all():
            n = session.exec(select(func.count()).select_from(ModelVersion)
                             .where(ModelVersion.model_name == m.name)).one()
            try:
                champ = version_out(registry.champion(session, m.name))
            except registry.RegistryError:
                champ = None
            out.append(ModelOut(name=m.name, family=m.family, description=m.description, champion=champ, versions=n))
        return out

    def known_model(session: Session, name: str) -> Model:
        m = session.get(Model, name)
        if m is None:
            raise ProblemError(404, "Not Found", f"unknown model {name!r}")
        return m

    @app.get("/v1/models/{name}/versions", response_model=list[VersionOut], responses=ERROR_RESPONSES,
             operation_id="listModelVersions", tags=["models"])
    def list_versions(name: str, session: Annotated[Session, Depends(db)],
                      p: Annotated[Principal, Depends(principal)]) -> list[VersionOut]:
        known_model(session, name)
        rows = session.exec(select(ModelVersion).where(ModelVersion.model_name == name)
                            .order_by(ModelVersion.version)).all()
        return [version_out(v) for v in rows]

    @app.post("/v1/models/{name}/rollback", response_model=VersionOut, responses=ERROR_RESPONSES,
              operation_id="rollbackModel", tags=["models"])
    def rollback(name: str, body: RollbackIn, session: Annotated[Session, Depends(db)],
                 p: Annotated[Principal, Depends(operator)]) -> VersionOut:
        known_model(session, name)
        try:
            v = registry.rollback(session, name, body.version_id, actor=f"key:{p.key_id}", reason=body.reason)
        except registry.TaintedVersion as exc:
            session.rollback()
            raise ProblemError(409, "Tainted version", str(exc)) from None
        except registry.RegistryError as exc:
            session.rollback()
            raise ProblemError(404 if "has no version" in str(exc) else 409, "Rollback refused", str(exc)) from None
        session.commit()
        return version_out(v)

    # ------------------------------------------------------------------ operations
    @app.get("/healthz", response_model=Health, operation_id="health", tags=["ops"])
    def health(session: Annotated[Session, Depends(db)]) -> Health:
        try:
            session.exec(select(1)).one()
            ok = True
        except Exception:
            ok = False
        return Health(status="ok" if ok else "degraded", database=ok, version=unlearn.__version__)

    @app.get("/metrics", response_class=PlainTextResponse, operation_id="metrics", tags=["ops"])
    def metrics(session: Annotated[Session, Depends(db)]) -> PlainTextResponse:
        body, content_type = render_metrics(session, settings)
        return PlainTextResponse(body, media_type=content_type)

    return app
