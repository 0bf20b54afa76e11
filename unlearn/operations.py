"""Operator and housekeeping actions on requests and jobs: cancel, review, decide, retry, reconcile."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import or_
from sqlmodel import Session, col, select

from unlearn.coalesce import coalesce
from unlearn.contracts import Scope
from unlearn.lease import expired_jobs
from unlearn.methods import ParamsError, get_method, method_names
from unlearn.registry import resolve_method
from unlearn.settings import Settings
from unlearn.store.models import DeletionRequest, Model, RequestTarget, UnlearningJob, utcnow
from unlearn.store.states import REQUEST_CANCELABLE, JobStage, RequestStatus, TargetStatus
from unlearn.store.transitions import IllegalTransition, audit, move_targets, sync_requests, transition


def _close_targets(session: Session, request_id: str, status: TargetStatus, **values: object) -> None:
    """Close the request's targets still pending (a served one keeps its job and version)."""
    targets = session.exec(select(RequestTarget).where(RequestTarget.request_id == request_id)).all()
    move_targets(session, targets, status, frm=[TargetStatus.PENDING], **values)


def cancel_request(session: Session, request: DeletionRequest, *, actor: str, reason: str = "canceled") -> None:
    """Cancel before any work started on it; a running request cannot be called back.

    Raises `IllegalTransition` when the request is already running or final, `Conflict` when another
    change to it won the race (the request's move comes first, so the loser leaves its targets alone)."""
    if request.status not in REQUEST_CANCELABLE:
        raise IllegalTransition(f"request {request.id} is {request.status}: only requests not yet running "
                                "can be canceled")
    transition(session, request, RequestStatus.CANCELED, actor=actor, reason=reason)
    _close_targets(session, request.id, TargetStatus.CANCELED, job_id=None)


def review_request(session: Session, request: DeletionRequest, *, approve: bool, actor: str,
                   reason: str) -> None:
    """An operator's decision on a request held for review: approved requests join the next batch.

    Raises `IllegalTransition` when the request is not held for review, `Conflict` when another
    decision on it won the race."""
    if request.status != RequestStatus.PENDING_REVIEW:
        raise IllegalTransition(f"request {request.id} is {request.status}, not pending_review")
    if approve:
        transition(session, request, RequestStatus.RECEIVED, actor=actor, reason=f"approved: {reason}")
        request.received_at = utcnow()  # the batch window counts from approval
        session.add(request)
        return
    transition(session, request, RequestStatus.REJECTED, actor=actor, reason=f"denied: {reason}")
    _close_targets(session, request.id, TargetStatus.REJECTED)


class ExtensionLimit(Exception):
    """The extension would take the deadline past the cap counted from the original due date: refused
    for what the request was already given, not for the body (the same body suits a fresh request)."""

    def __init__(self, request_id: str, *, cap_days: int, days_left: int) -> None:
        left = f"{days_left} days of extension are left" if days_left else "no extension is left"
        super().__init__(f"request {request_id} may be extended by at most {cap_days} days in all from its "
                         f"original due date; {left}")


def extend_due(session: Session, request: DeletionRequest, *, days: int, max_extension_days: int, actor: str,
               reason: str) -> None:
    """Move a deadline later (GDPR art. 12(3) allows two more months, with reasons), by at most
    `max_extension_days` in all from the request's original due date. Raises `ValueError` for a blank
    reason or a day count out of range, `ExtensionLimit` past the cap."""
    if not reason.strip():
        raise ValueError("extending a deadline needs a reason")
    if not 1 <= days <= 60:
        raise ValueError("a deadline can be extended by 1 to 60 days")
    latest = request.original_due_at + timedelta(days=max_extension_days)
    days_left = max((latest - request.due_at).days, 0)
    if days > days_left:
        raise ExtensionLimit(request.id, cap_days=max_extension_days, days_left=days_left)
    old = request.due_at
    request.due_at = old + timedelta(days=days)
    session.add(request)
    audit(session, actor=actor, entity_type="request", entity_id=request.id, from_state=request.status,
          to_state=request.status, reason=f"due date extended by {days} days: {reason}",
          data={"due_at_before": old.isoformat(), "due_at": request.due_at.isoformat()})


def decide_request(session: Session, request: DeletionRequest, *, action: str, actor: str, reason: str,
                   method: str | None = None, params: dict[str, Any] | None = None) -> None:
    """An operator's decision on a request whose chain of methods ended without a passing candidate
    (`needs_review`): "reject" ends it `rejected` with the operator's reason (the only way a request
    whose work ran ends so); "retry" makes its waiting targets pending again, with `method` and `params`
    when given (else as asked before), and the coalescer gives them a fresh job (a fresh chain).

    Raises `IllegalTransition` when the request is not in needs_review, `Conflict` when another decision
    on it won the race, `ValueError` for a blank reason, an unknown action, or a method or parameters that
    do not fit its models."""
    if not reason.strip():
        raise ValueError("a decision needs a reason")
    if action not in ("reject", "retry"):
        raise ValueError(f"unknown action {action!r}: reject or retry")
    if request.status != RequestStatus.NEEDS_REVIEW:
        raise IllegalTransition(f"request {request.id} is {request.status}, not needs_review")
    targets = session.exec(select(RequestTarget).where(RequestTarget.request_id == request.id)).all()
    waiting = [t for t in targets if t.status == TargetStatus.NEEDS_REVIEW]
    if action == "reject":
        transition(session, request, RequestStatus.REJECTED, actor=actor, reason=f"rejected by an operator: {reason}")
        move_targets(session, waiting, TargetStatus.REJECTED, frm=[TargetStatus.NEEDS_REVIEW])
        return
    if method is not None or params is not None:
        _check_method(session, request, {t.model_name for t in waiting}, method or request.method,
                      request.params if params is None else params)
        request.method = method or request.method
        request.params = request.params if params is None else params
        session.add(request)
    earlier = sorted({t.job_id for t in waiting if t.job_id})  # still the request's, in its trail and certificate
    move_targets(session, waiting, TargetStatus.PENDING, frm=[TargetStatus.NEEDS_REVIEW], job_id=None, version_id=None)
    sync_requests(session, {request.id}, actor=actor, reason=f"operator retry: {reason}", reopen=True,
                  data={"method": request.method, "params": request.params, "jobs": earlier})


def _check_method(session: Session, request: DeletionRequest, models: set[str], method: str,
                  params: dict[str, Any]) -> None:
    """ValueError unless `method` (or `auto`'s choice) applies to every model here and takes `params`."""
    if method != "auto" and method not in method_names():
        raise ValueError(f"unknown method {method!r}; known: auto, {', '.join(method_names())}")
    scope = Scope.from_dict(request.scope, request.kind)
    for name in sorted(models):
        chosen = resolve_method(session, name, method, scope)
        family = session.get(Model, name).family
        if not get_method(chosen).applies_to(family):
            raise ValueError(f"method {chosen!r} does not apply to {family} model {name!r}")
        if not scope.labels_known and get_method(chosen).needs_labels:
            raise ValueError(f"method {chosen!r} reads labels, and this request's samples come without them")
        try:
            get_method(chosen).parse_params(params)
        except ParamsError as exc:
            raise ValueError(f"{exc}; method {chosen!r}") from None


def retry_job(session: Session, job: UnlearningJob, *, actor: str) -> None:
    """Operator retry of a failed job: a fresh attempt budget, its requests queued again."""
    transition(session, job, JobStage.QUEUED, actor=actor, reason="operator retry")
    job.attempts, job.error, job.lease_until, job.enqueued_at = 0, None, None, utcnow()
    session.add(job)
    failed = move_targets(session, session.exec(select(RequestTarget).where(RequestTarget.job_id == job.id)).all(),
                          TargetStatus.PENDING, frm=[TargetStatus.FAILED])
    retried = {t.request_id for t in failed
               if session.get(DeletionRequest, t.request_id).status == RequestStatus.FAILED}
    sync_requests(session, retried, actor=actor, reason="operator retry", reopen=True)


def reconcile(session: Session, settings: Settings) -> list[str]:
    """The database is the system of record: return the jobs to (re-)enqueue.

    - jobs whose lease expired (their worker died);
    - queued jobs last enqueued long ago (their message may be gone with a wiped broker), or with no
      message out at all (handed back at a shutdown);
    - new jobs for pending requests past the batch window."""
    now = utcnow()
    stale = now - timedelta(seconds=settings.requeue_after_s)
    ids = expired_jobs(session, now)
    for job in session.exec(select(UnlearningJob).where(
            UnlearningJob.stage == JobStage.QUEUED,
            or_(col(UnlearningJob.enqueued_at) < stale, col(UnlearningJob.enqueued_at).is_(None)))).all():
        ids.append(job.id)
    for job_id in ids:
        job = session.get(UnlearningJob, job_id)
        job.enqueued_at = now
        session.add(job)
    return ids + coalesce(session, settings)
