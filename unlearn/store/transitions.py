"""The one place where requests and jobs change state. It refuses illegal moves and writes
the audit event in the same transaction as the change."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from unlearn.store.models import AuditEvent, DeletionRequest, UnlearningJob, utcnow

# received → queued → running → verifying → completed, plus rejected / failed / canceled.
# queued is reachable again from running/verifying (a crashed attempt is retried) and from
# completed (a continuous-compliance regression reopens the request).
# pending_review: held for an operator (settings.review_required_for); approve → received,
# deny → rejected.
REQUEST_TRANSITIONS: dict[str, set[str]] = {
    "pending_review": {"received", "rejected", "canceled"},
    "received": {"queued", "canceled", "failed", "completed"},
    "queued": {"running", "canceled", "failed", "completed"},
    "running": {"verifying", "queued", "failed", "completed"},
    "verifying": {"completed", "rejected", "queued", "failed"},
    "completed": {"queued"},
    "rejected": {"queued"},  # an operator retry
    "failed": {"queued"},  # an operator retry
    "canceled": set(),
}
REQUEST_FINAL = {"completed", "rejected", "failed", "canceled"}

JOB_TRANSITIONS: dict[str, set[str]] = {
    "queued": {"unlearning", "failed", "done"},
    # unlearning→unlearning: lease taken over; unlearning→done: nothing was left to forget.
    "unlearning": {"verifying", "queued", "failed", "unlearning", "done"},
    "verifying": {"promoting", "done", "queued", "failed", "unlearning"},
    "promoting": {"done", "queued", "failed", "unlearning"},
    "done": set(),
    "failed": {"queued"},  # an operator retry
}
JOB_ACTIVE = ("unlearning", "verifying", "promoting")


class IllegalTransition(ValueError):
    pass


def audit(session: Session, *, actor: str, entity_type: str, entity_id: str, to_state: str,
          from_state: str | None = None, reason: str | None = None, data: dict[str, Any] | None = None) -> None:
    session.add(AuditEvent(actor=actor, entity_type=entity_type, entity_id=entity_id, from_state=from_state,
                           to_state=to_state, reason=reason, data=data or {}))


def transition(session: Session, entity: DeletionRequest | UnlearningJob, to: str, *, actor: str,
               reason: str | None = None, data: dict[str, Any] | None = None) -> None:
    """Move a request's `status` or a job's `stage` to `to`, or raise IllegalTransition."""
    if isinstance(entity, DeletionRequest):
        table, attr, kind = REQUEST_TRANSITIONS, "status", "request"
    elif isinstance(entity, UnlearningJob):
        table, attr, kind = JOB_TRANSITIONS, "stage", "job"
    else:
        raise TypeError(f"no state machine for {type(entity).__name__}")
    current = getattr(entity, attr)
    if to not in table.get(current, set()):
        raise IllegalTransition(f"{kind} {entity.id}: {current} → {to} is not allowed")
    setattr(entity, attr, to)
    now = utcnow()
    if isinstance(entity, DeletionRequest):
        entity.updated_at = now
        if to in REQUEST_FINAL:
            entity.reason = reason if to != "completed" else None
        if to == "completed":
            entity.completed_at = now
    elif to in ("done", "failed"):
        entity.finished_at = now
    session.add(entity)
    audit(session, actor=actor, entity_type=kind, entity_id=entity.id, from_state=current, to_state=to,
          reason=reason, data=data)
