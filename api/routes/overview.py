"""The operator's overview: the request funnel, deadlines at risk, queue depths, active work.

No `from __future__ import annotations`: FastAPI reads the dependencies from live annotations.
"""

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter
from sqlalchemy import func
from sqlmodel import col, select

from api.deps import OperatorDep, SessionDep, SettingsDep
from api.problems import ERROR_RESPONSES
from api.routes.workers import alive_window_s, aware
from api.schemas import OverviewOut, QueueOut
from unlearn.sla import at_risk_clause, overdue_clause
from unlearn.store.models import DeletionRequest, UnlearningJob, WorkerHeartbeat, utcnow
from unlearn.store.states import JOB_ACTIVE, JobStage, RequestStatus

router = APIRouter(responses=ERROR_RESPONSES, tags=["operator"])


@router.get("/v1/overview", response_model=OverviewOut, operation_id="overview")
def overview(session: SessionDep, caller: OperatorDep, settings: SettingsDep) -> OverviewOut:
    now = utcnow()
    counts = dict(session.exec(select(DeletionRequest.status, func.count()).group_by(DeletionRequest.status)).all())

    def count(clause: Any) -> int:
        return session.exec(select(func.count()).select_from(DeletionRequest).where(clause)).one()

    queues = []
    for queue, n, oldest in session.exec(
            select(UnlearningJob.queue, func.count(), func.min(func.coalesce(UnlearningJob.enqueued_at,
                                                                             UnlearningJob.created_at)))
            .where(UnlearningJob.stage == JobStage.QUEUED).group_by(UnlearningJob.queue)).all():
        age = now - aware(oldest if isinstance(oldest, datetime) else datetime.fromisoformat(oldest))
        queues.append(QueueOut(queue=queue, depth=n, oldest_age_s=round(age.total_seconds(), 1)))
    alive_since = now - timedelta(seconds=alive_window_s(settings))
    return OverviewOut(
        funnel={s.value: counts.get(s, 0) for s in RequestStatus},
        overdue=count(overdue_clause(now)), at_risk=count(at_risk_clause(now, settings.at_risk_days)),
        at_risk_days=settings.at_risk_days, queues=queues,
        active_jobs=session.exec(select(func.count()).select_from(UnlearningJob)
                                 .where(col(UnlearningJob.stage).in_(sorted(JOB_ACTIVE)))).one(),
        workers_alive=session.exec(select(func.count()).select_from(WorkerHeartbeat)
                                   .where(WorkerHeartbeat.seen_at >= alive_since)).one(),
        now=now)
