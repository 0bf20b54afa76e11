"""Operator and housekeeping actions on requests and jobs: cancel, retry, reconcile."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import or_
from sqlmodel import Session, col, select

from unlearn.coalesce import coalesce
from unlearn.lease import expired_jobs
from unlearn.settings import Settings
from unlearn.store.models import DeletionRequest, RequestTarget, UnlearningJob, utcnow
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
