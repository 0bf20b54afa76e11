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

from collections.abc import Iterable
from typing import Any

from sqlalchemy import inspect, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from unlearn.store.models import AuditEvent, DeletionRequest, RequestTarget, UnlearningJob, utcnow
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
REQUEST_TRANSITIONS: dict[str, set[str]] = {
    R.PENDING_REVIEW: {R.RECEIVED, R.REJECTED, R.CANCELED},
    R.RECEIVED: {R.QUEUED, R.CANCELED, R.FAILED, R.COMPLETED},
    R.QUEUED: {R.RUNNING, R.CANCELED, R.FAILED, R.COMPLETED, R.REJECTED},
    R.RUNNING: {R.VERIFYING, R.QUEUED, R.FAILED, R.COMPLETED, R.REJECTED},
    R.VERIFYING: {R.COMPLETED, R.REJECTED, R.QUEUED, R.FAILED},
    R.COMPLETED: {R.QUEUED},
    R.REJECTED: {R.QUEUED},
    R.FAILED: {R.QUEUED},
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
    now = utcnow()
    values: dict[str, Any] = {attr: str(to)}
    if kind == "request":
        values["updated_at"] = now
        if to in REQUEST_FINAL:
            values["reason"] = reason if to != R.COMPLETED else None
        if to == R.COMPLETED:
            values["completed_at"] = now
    elif to in JOB_FINAL:
        values["finished_at"] = now
    state = inspect(entity, raiseerr=False)
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


# ---------------------------------------------------------------- requests, derived

def derived_status(current: str, targets: Iterable[tuple[str, str | None]]) -> str:
    """The status a request's targets add up to. `targets`: (target status, its job's stage or None).

    Operator-held states (pending_review, canceled) stay. Any failed target fails the request, any
    rejected one rejects it, all done (or canceled) completes it. Otherwise the furthest job decides;
    a target waiting for a job leaves a new request `received` and a reopened one `queued`."""
    targets = list(targets)
    if current in (R.PENDING_REVIEW, R.CANCELED) or not targets:
        return current
    statuses = {t for t, _ in targets}
    if TargetStatus.FAILED in statuses:
        return R.FAILED
    if TargetStatus.REJECTED in statuses:
        return R.REJECTED
    if statuses <= {TargetStatus.DONE, TargetStatus.CANCELED}:
        return R.COMPLETED
    stages = {stage for t, stage in targets if t == TargetStatus.PENDING}
    if stages & {J.VERIFYING, J.PROMOTING}:
        return R.VERIFYING
    if J.UNLEARNING in stages:
        return R.RUNNING
    if stages == {None}:
        return R.RECEIVED if current == R.RECEIVED else R.QUEUED
    return R.QUEUED


def sync_requests(session: Session, request_ids: Iterable[str], *, actor: str, reason: str | None = None,
                  reopen: bool = False) -> list[str]:
    """Move each request to its derived status; returns those that became completed.

    A final request stays final unless `reopen` (its targets were made pending again on purpose)."""
    completed = []
    session.flush()
    for rid in sorted(set(request_ids)):
        request = session.get(DeletionRequest, rid)
        if request is None or (request.status in REQUEST_FINAL and not reopen):
            continue
        rows = session.exec(select(RequestTarget.status, UnlearningJob.stage)
                            .join(UnlearningJob, col(UnlearningJob.id) == RequestTarget.job_id, isouter=True)
                            .where(RequestTarget.request_id == rid)).all()
        to = derived_status(request.status, rows)
        if to == request.status:
            continue
        transition(session, request, to, actor=actor, reason=reason)
        if to == R.COMPLETED:
            completed.append(rid)
    return completed


__all__ = ["JOB_TRANSITIONS", "REQUEST_TRANSITIONS", "Conflict", "IllegalTransition", "audit", "derived_status",
           "sync_requests", "transition"]
