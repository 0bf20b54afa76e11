"""Workers as their heartbeats show them, for operators.

No `from __future__ import annotations`: FastAPI reads the dependencies from live annotations.
"""

from datetime import UTC, datetime

from fastapi import APIRouter
from sqlmodel import select

from api.deps import OperatorDep, SessionDep, SettingsDep
from api.problems import ERROR_RESPONSES
from api.schemas import WorkerOut
from unlearn.settings import Settings
from unlearn.store.models import WorkerHeartbeat, utcnow

ALIVE_INTERVALS = 3  # a worker silent for this many heartbeat intervals is reported dead

router = APIRouter(responses=ERROR_RESPONSES, tags=["operator"])


def aware(t: datetime) -> datetime:
    """`t` with UTC attached when the database handed it back naive (SQLite)."""
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def alive_window_s(settings: Settings) -> float:
    """Seconds since its last heartbeat within which a worker counts as alive."""
    return ALIVE_INTERVALS * settings.heartbeat_interval_s


@router.get("/v1/workers", response_model=list[WorkerOut], operation_id="listWorkers")
def list_workers(session: SessionDep, caller: OperatorDep, settings: SettingsDep) -> list[WorkerOut]:
    now = utcnow()
    out = []
    for w in session.exec(select(WorkerHeartbeat).order_by(WorkerHeartbeat.worker)).all():
        since = (now - aware(w.seen_at)).total_seconds()
        out.append(WorkerOut(**w.model_dump(), seconds_since_seen=round(since, 1),
                             alive=since <= alive_window_s(settings)))
    return out
