"""Deadlines of deletion requests: which are overdue, and which are at risk of becoming so.

- overdue: still open and past `due_at`;
- at risk: no work started yet (held for review, received or queued) and fewer than
  `settings.at_risk_days` days left.
The same definitions serve the API's filters, its flags and `/metrics`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_
from sqlmodel import col

from unlearn.store.models import DeletionRequest
from unlearn.store.states import REQUEST_CANCELABLE, REQUEST_OPEN

OPEN = tuple(sorted(REQUEST_OPEN))
NOT_STARTED = tuple(sorted(REQUEST_CANCELABLE))  # nothing has run yet


def overdue_clause(now: datetime) -> Any:
    return and_(col(DeletionRequest.status).in_(OPEN), DeletionRequest.due_at < now)


def at_risk_clause(now: datetime, at_risk_days: float) -> Any:
    return and_(col(DeletionRequest.status).in_(NOT_STARTED), DeletionRequest.due_at >= now,
                DeletionRequest.due_at < now + timedelta(days=at_risk_days))


def flags(request: DeletionRequest, now: datetime, at_risk_days: float) -> tuple[bool, bool]:
    """(overdue, at_risk) for one request, as the clauses above decide them in SQL."""
    overdue = request.status in OPEN and request.due_at < now
    at_risk = request.status in NOT_STARTED and now <= request.due_at < now + timedelta(days=at_risk_days)
    return overdue, at_risk
