"""Who runs a job: claiming it with a conditional update, and the lease that keeps it claimed.

A Celery message carries only the job id, and a redelivered message may arrive while another worker
still runs the job. The lease decides who owns it: a job is claimed with a conditional update, a
heartbeat and progress renew the lease, and a worker that finds its lease taken over stops writing
(`LeaseLost`). A dead worker's lease runs out, and the job becomes claimable again.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, or_, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from unlearn.store.db import session_scope
from unlearn.store.models import UnlearningJob, utcnow
from unlearn.store.states import JOB_ACTIVE, JobStage
from unlearn.store.transitions import audit

log = logging.getLogger(__name__)


class LeaseLost(RuntimeError):
    """Another delivery took this job over; this one must stop without writing."""


# ---------------------------------------------------------------- claiming

def claim(session: Session, job_id: str, worker: str, lease_s: float) -> int | None:
    """Take the job (queued, or active with an expired lease) if no other job of its model is
    active; return the attempt number, or None if someone else holds it or it is finished."""
    now = utcnow()
    other = aliased(UnlearningJob)
    job = session.get(UnlearningJob, job_id)
    if job is None:
        return None
    prior = job.stage
    busy_model = exists().where(other.model_name == UnlearningJob.model_name, other.id != UnlearningJob.id,
                                col(other.stage).in_(JOB_ACTIVE), other.lease_until > now)
    claimable = or_(UnlearningJob.stage == JobStage.QUEUED,
                    and_(col(UnlearningJob.stage).in_(JOB_ACTIVE), UnlearningJob.lease_until < now))
    got = session.execute(update(UnlearningJob).where(UnlearningJob.id == job_id, claimable, ~busy_model)
                          .values(stage=JobStage.UNLEARNING, attempts=UnlearningJob.attempts + 1, worker=worker,
                                  lease_until=now + timedelta(seconds=lease_s), started_at=now, error=None,
                                  progress=0.0, message="claimed")
                          .execution_options(synchronize_session=False)).rowcount
    if got != 1:
        return None
    session.refresh(job)
    # The conditional update above is the transition (it must be atomic); it is audited like any other.
    audit(session, actor=worker, entity_type="job", entity_id=job_id, from_state=prior, to_state=JobStage.UNLEARNING,
          data={"attempt": job.attempts})
    return job.attempts


def lease_wait(session: Session, job_id: str) -> float:
    """Seconds until the job (or its model's active job) might become claimable."""
    job = session.get(UnlearningJob, job_id)
    now = utcnow()
    leases = session.exec(select(UnlearningJob.lease_until).where(
        UnlearningJob.model_name == job.model_name, col(UnlearningJob.stage).in_(JOB_ACTIVE),
        UnlearningJob.lease_until > now)).all()
    return max([(t - now).total_seconds() for t in leases if t] or [0.0])


class JobHandle:
    """Writes progress for one attempt, renewing the lease, and notices when the lease is lost."""

    def __init__(self, url: str, job_id: str, worker: str, attempt: int, lease_s: float) -> None:
        self.url, self.job_id, self.worker, self.attempt, self.lease_s = url, job_id, worker, attempt, lease_s
        self._last = 0.0
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> JobHandle:
        # Methods report progress at their own pace (a reference retrain not at all): a heartbeat
        # renews the lease meanwhile, so only a dead worker's lease runs out.
        self._thread = threading.Thread(target=self._heartbeat, name=f"lease-{self.job_id[:8]}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _heartbeat(self) -> None:
        while not self._stop.wait(max(self.lease_s / 3, 0.2)):
            try:
                with session_scope(self.url) as s:
                    self.write(s)
            except LeaseLost:
                self.lost = True
                return
            except Exception:  # a database hiccup: the next beat tries again
                log.warning("lease renewal of job %s failed", self.job_id, exc_info=True)

    def _mine(self):
        return and_(UnlearningJob.id == self.job_id, UnlearningJob.worker == self.worker,
                    UnlearningJob.attempts == self.attempt)

    def write(self, session: Session, **values: Any) -> None:
        values.setdefault("lease_until", utcnow() + timedelta(seconds=self.lease_s))
        if session.execute(update(UnlearningJob).where(self._mine()).values(**values)
                           .execution_options(synchronize_session=False)).rowcount != 1:
            raise LeaseLost(f"job {self.job_id}: attempt {self.attempt} lost its lease")

    def progress(self, fraction: float, message: str, *, stage_span: tuple[float, float] = (0.0, 0.8)) -> None:
        if self.lost:
            raise LeaseLost(f"job {self.job_id}: attempt {self.attempt} lost its lease")
        now = time.monotonic()
        if now - self._last < 0.5 and fraction < 1.0:
            return
        self._last = now
        lo, hi = stage_span
        with session_scope(self.url) as s:
            self.write(s, progress=round(lo + (hi - lo) * min(max(fraction, 0.0), 1.0), 4), message=message[:200])


def expired_jobs(session: Session, now: datetime | None = None) -> list[str]:
    now = now or utcnow()
    return list(session.exec(select(UnlearningJob.id).where(
        col(UnlearningJob.stage).in_(JOB_ACTIVE), UnlearningJob.lease_until < now)).all())
