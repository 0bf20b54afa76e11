"""Deletion requests: submit (idempotently), list, read, cancel, an operator's review, decision (after a
chain of methods ended without a passing candidate) and deadline extension, and the audit trail.

No `from __future__ import annotations`: FastAPI reads the dependencies from live annotations.
"""

import hashlib
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import func, or_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from api.auth import Principal
from api.deps import CallerDep, CoalescerDep, OperatorDep, SessionDep, SettingsDep
from api.group_commit import GroupCommit
from api.idempotency import Creation, Outcome, Row, create_many, create_once, require_key
from api.lookups import visible_request
from api.problems import ERROR_RESPONSES, UPLOAD_RESPONSES, ProblemError
from api.scheduler import CoalesceScheduler
from api.schemas import AuditOut, DecisionIn, ExtendIn, ReasonIn, RequestOut, RequestPage
from api.views import audit_out, request_out
from unlearn.data import records as rec
from unlearn.intake import (
    BulkRequestIn,
    DeletionRequestIn,
    Text,
    known_train_ids,
    prepare,
    submit_bulk,
    text,
)
from unlearn.operations import cancel_request, decide_request, extend_due, review_request
from unlearn.registry import request_job_ids
from unlearn.settings import Settings
from unlearn.sla import at_risk_clause, overdue_clause
from unlearn.store.models import AuditEvent, DeletionRequest, Model, RequestTarget, utcnow
from unlearn.store.states import REQUEST_FINAL, RequestStatus
from unlearn.store.transitions import IllegalTransition

STATUSES = tuple(s.value for s in RequestStatus)

router = APIRouter(prefix="/v1/deletion-requests", responses=ERROR_RESPONSES)


@router.post("", status_code=202, response_model=RequestOut, operation_id="createDeletionRequest", tags=["requests"],
             openapi_extra={"responses": {"202": {"links": {"GetRequest": {
                 "operationId": "getDeletionRequest", "parameters": {"request_id": "$response.body#/id"}}}}}})
async def create_request(body: DeletionRequestIn, request: Request, response: Response, caller: CallerDep,
                         coalescer: CoalescerDep,
                         idempotency_key: Annotated[str | None, Header(max_length=255)] = None) -> Any:
    """Answered once the request is committed: concurrent submissions share one transaction (group commit,
    `intake_writer`), so that the disk's flush is paid once per batch rather than once per request."""
    if body.params and not caller.is_operator:  # a method's budget is the operator's call
        raise ProblemError(403, "Forbidden", "only operators may set method parameters")
    require_key(CREATE, idempotency_key)
    stored, created = await request.app.state.intake.submit(Incoming(caller, idempotency_key, body))
    response.headers["Location"] = f"/v1/deletion-requests/{stored['id']}"
    if created is None:
        response.headers["Idempotent-Replayed"] = "true"
        return stored
    coalescer.poke()
    return created


CREATE = "POST /v1/deletion-requests"


@dataclass(frozen=True)
class Incoming:
    """A deletion request waiting for its batch: who sent it, under which Idempotency-Key, and the body."""

    caller: Principal
    key: str
    body: DeletionRequestIn


def write_requests(engine: Engine, settings: Settings, batch: list[Incoming]) -> list[Outcome[RequestOut]]:
    """Record a batch of deletion requests in one transaction (`create_many`): the samples scopes checked
    with one query per model, the rows inserted together, one COMMIT. Each outcome is what one request
    alone would have got: (stored answer, new body), (stored answer, None) for a replay, or its error."""
    with Session(engine, expire_on_commit=False) as session:
        known = known_train_ids(session, [it.body for it in batch])
        # Held for the batch: the session's identity map keeps rows only while someone refers to them, and
        # each request's `session.get(Model, …)` is then answered from it rather than by a query.
        models = session.exec(select(Model).where(col(Model.name).in_({it.body.model for it in batch}))).all()

        def creation(it: Incoming) -> Creation[RequestOut]:
            def create() -> tuple[RequestOut, list[Row]]:
                new = prepare(session, settings, it.caller.tenant, it.body, it.caller.actor, known=known)
                # the response read from the column values: the rows are inserted later, with the batch's
                out = request_out(session, SimpleNamespace(**new.request), settings.at_risk_days,
                                  [SimpleNamespace(**t) for t in new.targets], new=True)
                return out, new.rows()
            return Creation(it.caller.tenant, it.key, it.body, create)

        outcomes = create_many(session, operation=CREATE, items=[creation(it) for it in batch], status_code=202)
        del models
        return outcomes


def intake_writer(engine: Engine, settings: Settings) -> GroupCommit[Incoming, tuple[dict[str, Any], Any]]:
    """The app's group commit for `POST /v1/deletion-requests` (set on `app.state.intake`)."""
    return GroupCommit(partial(write_requests, engine, settings))


_SCOPE_FORMATS = {"application/x-ndjson": "ndjson", "application/jsonl": "ndjson",
                  "application/vnd.apache.parquet": "parquet", "application/x-parquet": "parquet"}


class _BulkBody(BulkRequestIn):
    upload_sha256: str  # what an Idempotency-Key's replay must match, besides the query


@router.post("/bulk", status_code=202, response_model=RequestOut, operation_id="createBulkDeletionRequest",
             tags=["requests"], responses=UPLOAD_RESPONSES,
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/x-ndjson": {"schema": {"type": "string"}},
                 "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}}}}})
async def create_bulk_request(request: Request, response: Response, session: SessionDep, caller: CallerDep,
                              settings: SettingsDep, coalescer: CoalescerDep,
                              query: Annotated[BulkRequestIn, Query()],
                              idempotency_key: Annotated[str | None, Header(max_length=255)] = None) -> Any:
    """A deletion request over a long list, sent as the body: up to `UNLEARN_MAX_BULK_SCOPE_ITEMS` (a million)
    training sample ids or subjects of one model, as NDJSON (`{"sample_id": "…"}` or `{"subject": "…"}` a
    line) or Parquet (one column `sample_id` or `subject`). The rest of the request comes in the query.
    Served by one job like any samples request; the stored scope keeps the list's count and sha256."""
    kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    fmt = _SCOPE_FORMATS.get(kind)
    if fmt is None:
        raise ProblemError(415, "Unsupported Media Type",
                           f"the list comes as application/x-ndjson or application/vnd.apache.parquet, not {kind!r}")
    data = await request.body()
    if len(data) > settings.max_bulk_body_bytes:
        raise ProblemError(413, "Payload Too Large", f"an upload is limited to {settings.max_bulk_body_bytes} bytes")
    try:
        column, values = await run_in_threadpool(rec.scope_list_from_bytes, data, fmt, "upload")
    except rec.RecordError as exc:
        raise ProblemError(422, "Invalid scope list", str(exc)) from None
    digest = _BulkBody(**query.model_dump(), upload_sha256=hashlib.sha256(data).hexdigest())

    def create() -> RequestOut:
        req, targets = submit_bulk(session, settings, caller.tenant, query, column, values, actor=caller.actor)
        session.flush()
        return request_out(session, req, settings.at_risk_days, targets)

    stored, created = await run_in_threadpool(
        create_once, session, operation="POST /v1/deletion-requests/bulk", tenant=caller.tenant,
        key=idempotency_key, body=digest, create=create, status_code=202)
    response.headers["Location"] = f"/v1/deletion-requests/{stored['id']}"
    if created is None:
        response.headers["Idempotent-Replayed"] = "true"
        return stored
    coalescer.poke()
    return created


@router.get("", response_model=RequestPage, operation_id="listDeletionRequests", tags=["requests"])
def list_requests(session: SessionDep, caller: CallerDep, settings: SettingsDep,
                  status: Annotated[list[Text] | None, Query()] = None,
                  q: Annotated[text(max_length=128) | None, Query(description="id prefix, external id or tenant")] = None,
                  model: Annotated[text(max_length=64) | None, Query()] = None,
                  flag: Annotated[str | None, Query(pattern="^(overdue|at_risk)$")] = None,
                  page: Annotated[int, Query(ge=1, le=100_000)] = 1,
                  size: Annotated[int, Query(ge=1, le=200)] = 50) -> RequestPage:
    bad = [s for s in status or [] if s not in STATUSES]
    if bad:
        raise ProblemError(422, "Invalid request", f"unknown status {bad[0]!r}; one of {', '.join(STATUSES)}")
    where = []
    if not caller.is_operator:
        where.append(DeletionRequest.tenant == caller.tenant)
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
    return RequestPage(items=[request_out(session, r, settings.at_risk_days) for r in rows], total=total,
                       page=page, size=size)


@router.get("/{request_id}", response_model=RequestOut, operation_id="getDeletionRequest", tags=["requests"])
def get_request(request_id: Text, session: SessionDep, caller: CallerDep, settings: SettingsDep) -> RequestOut:
    return request_out(session, visible_request(session, caller, request_id), settings.at_risk_days)


@router.post("/{request_id}/cancel", response_model=RequestOut, operation_id="cancelDeletionRequest",
             tags=["requests"])
def cancel(request_id: Text, session: SessionDep, caller: OperatorDep, settings: SettingsDep) -> RequestOut:
    r = visible_request(session, caller, request_id)
    cancel_request(session, r, actor=caller.actor)
    session.commit()
    return request_out(session, r, settings.at_risk_days)


def audit_trail(session: Session, request_id: str) -> list[AuditEvent]:
    """The request's own events, its certificate's, and those of the jobs and versions that served it,
    oldest first."""
    targets = session.exec(select(RequestTarget).where(RequestTarget.request_id == request_id)).all()
    job_ids = set(request_job_ids(session, request_id))  # an operator's retry leaves earlier jobs behind
    version_ids = {t.version_id for t in targets if t.version_id}
    clauses = [(AuditEvent.entity_type.in_(("request", "certificate"))) & (AuditEvent.entity_id == request_id)]
    if job_ids:
        clauses.append((AuditEvent.entity_type == "job") & col(AuditEvent.entity_id).in_(job_ids))
    if version_ids:
        clauses.append((AuditEvent.entity_type == "version") & col(AuditEvent.entity_id).in_(version_ids))
    return list(session.exec(select(AuditEvent).where(or_(*clauses))
                             .order_by(col(AuditEvent.at), col(AuditEvent.id))).all())


@router.get("/{request_id}/audit", response_model=list[AuditOut], operation_id="getRequestAudit", tags=["requests"])
def request_audit(request_id: Text, session: SessionDep, caller: CallerDep) -> list[AuditOut]:
    r = visible_request(session, caller, request_id)
    # A submitter sees who in their own tenant acted; an operator's key only as "an operator".
    return audit_out(session, audit_trail(session, r.id), None if caller.is_operator else caller.tenant)


def _review(request_id: str, session: Session, caller: Principal, approve: bool, reason: str,
            settings: Settings, coalescer: CoalesceScheduler) -> RequestOut:
    r = visible_request(session, caller, request_id)
    review_request(session, r, approve=approve, actor=caller.actor, reason=reason)
    session.commit()
    if approve:
        coalescer.poke()
    return request_out(session, r, settings.at_risk_days)


@router.post("/{request_id}/approve", response_model=RequestOut, operation_id="approveDeletionRequest",
             tags=["operator"])
def approve(request_id: Text, body: ReasonIn, session: SessionDep, caller: OperatorDep, settings: SettingsDep,
            coalescer: CoalescerDep) -> RequestOut:
    return _review(request_id, session, caller, True, body.reason, settings, coalescer)


@router.post("/{request_id}/deny", response_model=RequestOut, operation_id="denyDeletionRequest", tags=["operator"])
def deny(request_id: Text, body: ReasonIn, session: SessionDep, caller: OperatorDep, settings: SettingsDep,
         coalescer: CoalescerDep) -> RequestOut:
    return _review(request_id, session, caller, False, body.reason, settings, coalescer)


@router.post("/{request_id}/decision", response_model=RequestOut, operation_id="decideDeletionRequest",
             tags=["operator"])
def decide(request_id: Text, body: DecisionIn, session: SessionDep, caller: OperatorDep, settings: SettingsDep,
           coalescer: CoalescerDep) -> RequestOut:
    r = visible_request(session, caller, request_id)
    if body.action == "reject" and (body.method is not None or body.params is not None):
        raise ProblemError(422, "Invalid request", "method and params go with a retry, not a reject")
    try:
        decide_request(session, r, action=body.action, actor=caller.actor, reason=body.reason, method=body.method,
                       params=body.params)
    except IllegalTransition:  # the request's state, not the body: the error map answers 409
        raise
    except ValueError as exc:  # a method or parameters that do not fit the request's models
        raise ProblemError(422, "Invalid request", str(exc)) from None
    session.commit()
    if body.action == "retry":
        coalescer.poke()
    return request_out(session, r, settings.at_risk_days)


@router.post("/{request_id}/extend", response_model=RequestOut, operation_id="extendDeletionRequest",
             tags=["operator"])
def extend(request_id: Text, body: ExtendIn, session: SessionDep, caller: OperatorDep,
           settings: SettingsDep) -> RequestOut:
    r = visible_request(session, caller, request_id)
    if r.status in REQUEST_FINAL:
        raise ProblemError(409, "Conflict", f"request {r.id} is {r.status}: only open requests have a deadline")
    try:
        extend_due(session, r, days=body.days, max_extension_days=settings.max_extension_days, actor=caller.actor,
                   reason=body.reason)
    except IllegalTransition:  # the request's state, not the body: the error map answers 409
        raise
    except ValueError as exc:  # a blank reason or a day count out of range
        raise ProblemError(422, "Invalid request", str(exc)) from None
    session.commit()
    return request_out(session, r, settings.at_risk_days)
