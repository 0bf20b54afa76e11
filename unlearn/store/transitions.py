"""The one place where requests and jobs change state.

Every change is one conditional update, `UPDATE … SET status = :to WHERE id = :id AND status = :from`,
with its audit event in the same transaction. When two changes race (an operator's approve and deny
sent together, a cancel against the coalescer), the database lets exactly one of them match the row;
the other raises `Conflict` and its transaction is rolled back, so nothing half-done remains.

A request's status is not kept by hand: it is derived from its targets and their jobs
(`derived_status`), and `sync_requests` moves each request there. Only an operator's decisions
(review, cancel) and the explicit reopenings (a compliance regression, an operator retry) move a
request by themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import insert, inspect, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from unlearn.store.db import id_chunks
from unlearn.store.models import (
    AuditEvent,
    DeletionRequest,
    ModelVersion,
    RequestTarget,
    UnlearningJob,
    utcnow,
)
from unlearn.store.states import (
    JOB_FINAL,
    REQUEST_FINAL,
    JobStage,
    RequestStatus,
    TargetStatus,
)

R, J = RequestStatus, JobStage

# The legal moves. received → queued → running → verifying → completed, plus rejected / failed /
# canceled. queued is reachable again from running/verifying (a crashed attempt is retried), from
# completed (a continuous-compliance regression reopens the request) and from rejected/failed (an
# operator retry). pending_review: held for an operator; approve → received, deny → rejected.
# A request with targets on several models follows the furthest of their jobs, so among queued, running
# and verifying it may move either way (one model's job finishes while another's starts).
# needs_review: a job's chain of methods ended without a passing candidate; an operator's decision
# moves it on (retry → queued, reject → rejected), and the request's other models may still move it
# among the working states meanwhile. Only an operator rejects a request whose work ran.
REQUEST_TRANSITIONS: dict[str, set[str]] = {
    R.PENDING_REVIEW: {R.RECEIVED, R.REJECTED, R.CANCELED},
    R.RECEIVED: {R.QUEUED, R.CANCELED, R.FAILED, R.COMPLETED},
    R.QUEUED: {R.RUNNING, R.VERIFYING, R.CANCELED, R.FAILED, R.COMPLETED, R.REJECTED, R.NEEDS_REVIEW},
    R.RUNNING: {R.VERIFYING, R.QUEUED, R.FAILED, R.COMPLETED, R.REJECTED, R.NEEDS_REVIEW},
    R.VERIFYING: {R.COMPLETED, R.REJECTED, R.QUEUED, R.RUNNING, R.FAILED, R.NEEDS_REVIEW},
    R.NEEDS_REVIEW: {R.REJECTED, R.QUEUED, R.RUNNING, R.VERIFYING, R.FAILED, R.COMPLETED},
    R.COMPLETED: {R.QUEUED},
    # An operator retry of a failed job, or of a rejected one, while the request's other jobs go on.
    R.REJECTED: {R.QUEUED, R.RUNNING, R.VERIFYING},
    R.FAILED: {R.QUEUED, R.RUNNING, R.VERIFYING},
    R.CANCELED: set(),
}

JOB_TRANSITIONS: dict[str, set[str]] = {
    J.QUEUED: {J.UNLEARNING, J.FAILED, J.DONE},
    # unlearning→unlearning: lease taken over; unlearning→done: nothing was left to forget.
    J.UNLEARNING: {J.VERIFYING, J.QUEUED, J.FAILED, J.UNLEARNING, J.DONE},
    J.VERIFYING: {J.PROMOTING, J.DONE, J.QUEUED, J.FAILED, J.UNLEARNING},
    J.PROMOTING: {J.DONE, J.QUEUED, J.FAILED, J.UNLEARNING},
    J.DONE: set(),
    J.FAILED: {J.QUEUED},  # an operator retry
}


class IllegalTransition(ValueError):
    """The move is not in the state machine (the API answers 409)."""


class Conflict(IllegalTransition):
    """Another change won the race for this row: it is no longer in the state this one started from."""


def audit(session: Session, *, actor: str, entity_type: str, entity_id: str, to_state: str,
          from_state: str | None = None, reason: str | None = None, data: dict[str, Any] | None = None) -> None:
    session.add(AuditEvent(actor=actor, entity_type=entity_type, entity_id=entity_id, from_state=from_state,
                           to_state=to_state, reason=reason, data=data or {}))


def audit_many(session: Session, events: list[dict[str, Any]]) -> None:
    """Many audit rows (each `audit`'s keyword arguments) in one INSERT: building an ORM row costs more
    than writing it, and a burst's job writes thousands."""
    if events:
        now = utcnow()
        session.execute(insert(AuditEvent), [{"at": now, "from_state": None, "reason": None, **e,
                                              "data": e.get("data") or {}} for e in events])


def _moved_values(kind: str, current: str, to: str, reason: str | None) -> dict[str, Any]:
    """The columns a legal move from `current` to `to` writes: the state, and for a request its
    timestamps and the reason the submitter reads; for a job its finish time."""
    now = utcnow()
    if kind == "job":
        return {"stage": str(to), **({"finished_at": now} if to in JOB_FINAL else {})}
    values: dict[str, Any] = {"status": str(to), "updated_at": now}
    if to in REQUEST_FINAL or to == R.NEEDS_REVIEW:  # what the operator or the submitter reads
        values["reason"] = reason if to != R.COMPLETED else None
    elif current == R.NEEDS_REVIEW:  # back at work: why it waited is in the audit trail, no longer current
        values["reason"] = None
    if to == R.COMPLETED:
        values["completed_at"] = now
    return values


def transition(session: Session, entity: DeletionRequest | UnlearningJob, to: str, *, actor: str,
               reason: str | None = None, data: dict[str, Any] | None = None) -> None:
    """Move a request's `status` or a job's `stage` to `to`.

    Raises `IllegalTransition` for a move the machine does not allow and `Conflict` when the row in
    the database is no longer in the state `entity` shows (another transaction moved it first)."""
    if isinstance(entity, DeletionRequest):
        table, attr, kind = REQUEST_TRANSITIONS, "status", "request"
    elif isinstance(entity, UnlearningJob):
        table, attr, kind = JOB_TRANSITIONS, "stage", "job"
    else:
        raise TypeError(f"no state machine for {type(entity).__name__}")
    current = getattr(entity, attr)
    if to not in table.get(current, set()):
        raise IllegalTransition(f"{kind} {entity.id}: {current} → {to} is not allowed")
    values = _moved_values(kind, current, to, reason)
    state = inspect(entity, raiseerr=False)
    if state is not None and state.detached:
        raise ValueError(f"{kind} {entity.id} is detached: load it in this session before moving it")
    if state is not None and state.persistent:
        cls = type(entity)
        moved = session.execute(update(cls).where(cls.id == entity.id, getattr(cls, attr) == current)
                                .values(**values).execution_options(synchronize_session=False)).rowcount
        if moved != 1:
            raise Conflict(f"{kind} {entity.id} changed meanwhile: it is no longer {current}")
        for k, v in values.items():  # the row already holds them: no second UPDATE at flush
            set_committed_value(entity, k, v)
    else:  # not in the database yet: its first INSERT writes the state
        for k, v in values.items():
            setattr(entity, k, v)
        session.add(entity)
    audit(session, actor=actor, entity_type=kind, entity_id=entity.id, from_state=current, to_state=to,
          reason=reason, data=data)


def requeue_job(session: Session, job: UnlearningJob, *, actor: str, reason: str,
                data: dict[str, Any] | None = None) -> None:
    """Queue an active job again with no lease (a retry, a champion that moved, a hand-back at shutdown);
    the requests of its pending targets follow."""
    transition(session, job, J.QUEUED, actor=actor, reason=reason[:500], data=data)
    job.lease_until = None
    session.add(job)
    request_ids = session.exec(select(RequestTarget.request_id).where(
        RequestTarget.job_id == job.id, RequestTarget.status == TargetStatus.PENDING)).all()
    sync_requests(session, set(request_ids), actor=actor, reason=reason)


def move_targets(session: Session, targets: Iterable[RequestTarget], to: str, *, frm: Iterable[str],
                 **values: Any) -> list[RequestTarget]:
    """Move targets now in one of the statuses `frm` to `to` (setting `values` too), one conditional
    update for all; returns the targets that moved (a target another transaction moved first stays
    as that one left it, and is not returned)."""
    targets = [t for t in targets if t.status in set(frm)]
    if not targets:
        return []
    session.flush()
    ids = [t.id for t in targets]
    moved = set(session.execute(update(RequestTarget).where(col(RequestTarget.id).in_(ids),
                                                            col(RequestTarget.status).in_(list(frm)))
                                .values(status=str(to), **values).returning(RequestTarget.id)
                                .execution_options(synchronize_session=False)).scalars())
    out = []
    for t in targets:
        if t.id in moved:
            for k, v in {"status": str(to), **values}.items():
                set_committed_value(t, k, v)
            out.append(t)
        else:
            session.refresh(t)
    return out


def move_version(session: Session, version: ModelVersion, to: str, *, frm: Iterable[str]) -> None:
    """Move a model version's status to `to` if it is in one of `frm`, as one conditional update.
    Raises `Conflict` when another transaction moved it first. (Which version serves is the champion
    alias's compare-and-swap, `registry.move_alias`; this keeps the status beside it honest.)"""
    frm = [str(f) for f in frm]
    if version.status == to:
        return
    session.flush()
    moved = session.execute(update(ModelVersion).where(ModelVersion.id == version.id,
                                                       col(ModelVersion.status).in_(frm))
                            .values(status=str(to)).execution_options(synchronize_session=False)).rowcount
    if moved != 1:
        raise Conflict(f"version {version.id} changed meanwhile: it is no longer {' or '.join(frm)}")
    set_committed_value(version, "status", str(to))


# ---------------------------------------------------------------- requests, derived

def derived_status(current: str, targets: Iterable[tuple[str, str | None]]) -> str:
    """The status a request's targets add up to. `targets`: (target status, its job's stage or None).

    Operator-held states (pending_review, canceled) stay. Any failed target fails the request, any
    rejected one rejects it, any waiting for an operator's decision (its chain of methods spent) holds it
    in needs_review, all done (or canceled) completes it. Otherwise the furthest job decides;
    a target waiting for a job leaves a new request `received` and a reopened one `queued`."""
    targets = list(targets)
    if current in (R.PENDING_REVIEW, R.CANCELED) or not targets:
        return current
    statuses = {t for t, _ in targets}
    if TargetStatus.FAILED in statuses:
        return R.FAILED
    if TargetStatus.REJECTED in statuses:
        return R.REJECTED
    if TargetStatus.NEEDS_REVIEW in statuses:
        return R.NEEDS_REVIEW
    if statuses <= {TargetStatus.DONE, TargetStatus.CANCELED}:
        return R.COMPLETED
    stages = {stage for t, stage in targets if t == TargetStatus.PENDING}
    if stages & {J.VERIFYING, J.PROMOTING}:
        return R.VERIFYING
    if J.UNLEARNING in stages or TargetStatus.DONE in statuses:  # part of it is served: under way
        return R.RUNNING
    if stages == {None}:
        return R.RECEIVED if current == R.RECEIVED else R.QUEUED
    return R.QUEUED


def sync_requests(session: Session, request_ids: Iterable[str], *, actor: str, reason: str | None = None,
                  reopen: bool = False, data: dict[str, Any] | None = None) -> list[str]:
    """Move each request to its derived status; returns those that became completed, sorted.

    A final request stays final unless `reopen` (its targets were made pending again on purpose).
    Requests are read afresh, `unlearn.store.db.IN_LIST_MAX` at a time with their targets in one query, and the requests
    that make the same move share one conditional UPDATE and one batch of audit rows: a burst's job
    moves thousands of requests at a time. A request another transaction moved meanwhile (two workers
    on two of its models) is not matched by that UPDATE; its status is derived again, alone, from what
    that one committed: a derived move is a function of the targets, so redoing it is always right."""
    completed: list[str] = []
    session.flush()
    for chunk in id_chunks(sorted(set(request_ids))):
        requests = session.exec(select(DeletionRequest).where(col(DeletionRequest.id).in_(chunk))
                                .execution_options(populate_existing=True)).all()
        rows = _target_stages(session, chunk)
        moves: dict[tuple[str, str], list[DeletionRequest]] = {}
        for request in requests:
            if request.status in REQUEST_FINAL and not reopen:
                continue
            to = derived_status(request.status, rows[request.id])
            if to != request.status:
                moves.setdefault((request.status, to), []).append(request)
        for (frm, to), group in moves.items():
            moved = _move_requests(session, group, frm, to, actor=actor, reason=reason, data=data)
            for request in group:
                if request.id in moved:
                    completed += [request.id] if to == R.COMPLETED else []
                elif _sync_one(session, request.id, actor=actor, reason=reason, reopen=reopen, data=data):
                    completed.append(request.id)
    return sorted(completed)


def _target_stages(session: Session, request_ids: Sequence[str]) -> dict[str, list[tuple[str, str | None]]]:
    """Each request's targets as `derived_status` reads them: (target status, its job's stage or None)."""
    rows: dict[str, list[tuple[str, str | None]]] = {rid: [] for rid in request_ids}
    for rid, status, stage in session.exec(
            select(RequestTarget.request_id, RequestTarget.status, UnlearningJob.stage)
            .join(UnlearningJob, col(UnlearningJob.id) == RequestTarget.job_id, isouter=True)
            .where(col(RequestTarget.request_id).in_(request_ids))).all():
        rows[rid].append((status, stage))
    return rows


def _move_requests(session: Session, group: list[DeletionRequest], frm: str, to: str, *, actor: str,
                   reason: str | None, data: dict[str, Any] | None) -> set[str]:
    """Move the requests of `group`, all now in `frm`, to `to` with one conditional UPDATE and their
    audit rows; returns the ids that moved (one another transaction moved first is left as it is)."""
    if to not in REQUEST_TRANSITIONS.get(frm, set()):
        raise IllegalTransition(f"request {group[0].id}: {frm} → {to} is not allowed")
    values = _moved_values("request", frm, to, reason)
    moved = set(session.execute(update(DeletionRequest).where(
        col(DeletionRequest.id).in_([r.id for r in group]), DeletionRequest.status == frm)
        .values(**values).returning(DeletionRequest.id).execution_options(synchronize_session=False)).scalars())
    for request in group:
        if request.id in moved:
            for k, v in values.items():
                set_committed_value(request, k, v)
    audit_many(session, [{"actor": actor, "entity_type": "request", "entity_id": r.id, "from_state": frm,
                          "to_state": to, "reason": reason, "data": data} for r in group if r.id in moved])
    return moved


def _sync_one(session: Session, rid: str, *, actor: str, reason: str | None, reopen: bool,
              data: dict[str, Any] | None) -> bool:
    """`sync_requests` for one request that lost a race: read it and its targets again and move it,
    retrying while other transactions keep moving it. Returns whether it became completed."""
    for attempt in range(_SYNC_ATTEMPTS):
        request = session.get(DeletionRequest, rid, populate_existing=True)
        if request is None or (request.status in REQUEST_FINAL and not reopen):
            return False
        to = derived_status(request.status, _target_stages(session, [rid])[rid])
        if to == request.status:
            return False
        try:
            transition(session, request, to, actor=actor, reason=reason, data=data)
        except Conflict:
            if attempt + 1 == _SYNC_ATTEMPTS:
                raise
            continue
        return to == R.COMPLETED
    return False


_SYNC_ATTEMPTS = 3


__all__ = ["JOB_TRANSITIONS", "REQUEST_TRANSITIONS", "Conflict", "IllegalTransition", "audit", "audit_many",
           "derived_status", "move_targets", "move_version", "requeue_job", "sync_requests", "transition"]
