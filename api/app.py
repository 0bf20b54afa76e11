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
from sqlalchemy import func, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

import unlearn
from api import problems
from api.auth import KeyCache, Principal, RateLimiter, api_key_header, authenticate
from api.context import ApiContext, known_model, visible_request
from api.dashboard import add_dashboard_routes
from api.operator import add_operator_routes
from api.problems import ERROR_RESPONSES, ProblemError
from api.schemas import Health, ModelOut, RequestOut, RequestPage, RollbackIn, VersionOut
from api.views import request_out, version_out
from unlearn import registry
from unlearn.intake import DeletionRequestIn, IntakeError, submit
from unlearn.metrics import render_metrics
from unlearn.operations import cancel_request
from unlearn.settings import Settings
from unlearn.sla import at_risk_clause, overdue_clause
from unlearn.store.db import get_engine
from unlearn.store.models import (
    DeletionRequest,
    IdempotencyRecord,
    Model,
    ModelVersion,
    RequestTarget,
    utcnow,
)
from unlearn.store.transitions import REQUEST_TRANSITIONS, IllegalTransition

REQUEST_STATUSES = tuple(REQUEST_TRANSITIONS)  # pending_review, received, …, canceled


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


def create_app(settings: Settings, *, schedule_coalesce: Callable[[float], None] | None = None,
               enqueue_jobs: Callable[[list[str]], None] | None = None) -> FastAPI:
    """`schedule_coalesce(delay_s)` asks the workers to batch pending requests after `delay_s`;
    `enqueue_jobs(ids)` sends jobs an operator retried (without it the reconciler sends them later)."""
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

    def as_out(session: Session, r: DeletionRequest, targets: list[RequestTarget] | None = None) -> RequestOut:
        return request_out(session, r, settings.at_risk_days, targets)

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
            out = as_out(session, req, targets)
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
                      q: Annotated[str | None, Query(max_length=128, description="id prefix, external id or tenant")] = None,
                      model: Annotated[str | None, Query(max_length=64)] = None,
                      flag: Annotated[str | None, Query(pattern="^(overdue|at_risk)$")] = None,
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
        if model:
            where.append(DeletionRequest.model_name == model)
        if q:
            where.append(or_(col(DeletionRequest.id).startswith(q, autoescape=True), DeletionRequest.external_id == q,
                             DeletionRequest.tenant == q))
        if flag:
            now = utcnow()
            where.append(overdue_clause(now) if flag == "overdue" else at_risk_clause(now, settings.at_risk_days))
        total = session.exec(select(func.count()).select_from(DeletionRequest).where(*where)).one()
        rows = session.exec(select(DeletionRequest).where(*where)
                            .order_by(col(DeletionRequest.received_at).desc(), col(DeletionRequest.id))
                            .offset((page - 1) * size).limit(size)).all()
        return RequestPage(items=[as_out(session, r) for r in rows], total=total, page=page, size=size)

    @app.get("/v1/deletion-requests/{request_id}", response_model=RequestOut, responses=ERROR_RESPONSES,
             operation_id="getDeletionRequest", tags=["requests"])
    def get_request(request_id: str, session: Annotated[Session, Depends(db)],
                    p: Annotated[Principal, Depends(principal)]) -> RequestOut:
        return as_out(session, visible_request(session, p, request_id))

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
        return as_out(session, r)

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

    ctx = ApiContext(settings=settings, db=db, principal=principal, operator=operator, poke_coalescer=scheduler.poke,
                     enqueue_jobs=enqueue_jobs or (lambda _ids: None))
    add_operator_routes(app, ctx)
    add_dashboard_routes(app, ctx)

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
