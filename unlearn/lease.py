"""Who runs a job: claiming it with a conditional update, and the lease that keeps it claimed.

A Celery message carries only the job id, and a redelivered message may arrive while another worker
still runs the job. The lease decides who owns it: a job is claimed with a conditional update, a
heartbeat and progress renew the lease, and a worker that finds its lease taken over stops writing
(`LeaseLost`). A dead worker's lease runs out, and the job becomes claimable again.

A clean shutdown does not leave that wait behind: a running attempt is given a grace period to finish,
then handed back (`release`): queued again, its lease and owner cleared, its requests following.
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
from unlearn.store.transitions import audit, requeue_job

log = logging.getLogger(__name__)

# The attempts running in this process, and whether it is shutting down (then it claims nothing new).
_live: set[JobHandle] = set()
_live_lock = threading.Lock()
_draining = threading.Event()


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
        with _live_lock:
            _live.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        with _live_lock:
            _live.discard(self)
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

    def hand_back(self, reason: str) -> bool:
        """Return the job to the queue if this attempt still owns it (see `release`). The attempt stops at
        its next progress report (`LeaseLost`) and writes nothing more."""
        self.lost = True
        self._stop.set()
        with session_scope(self.url) as s:
            return release(s, self.job_id, self.worker, self.attempt, reason=reason)


# ---------------------------------------------------------------- handing back at shutdown

def release(session: Session, job_id: str, worker: str, attempt: int, *, reason: str) -> bool:
    """Hand an active job back to the queue if `worker`'s attempt `attempt` still owns it; returns whether
    it did. The job is queued with no lease and no owner, so that the attempt's own later writes fail
    (`LeaseLost`); its requests follow. A shutdown is not the job's failure: the attempt is given back
    to its budget. No message is out for it any more (`enqueued_at` cleared): the reconciler sends one."""
    job = session.get(UnlearningJob, job_id, populate_existing=True)
    if job is None or job.stage not in JOB_ACTIVE:
        return False
    owned = session.execute(update(UnlearningJob).where(
        UnlearningJob.id == job_id, UnlearningJob.worker == worker, UnlearningJob.attempts == attempt,
        UnlearningJob.stage == job.stage).values(
        worker=None, lease_until=None, enqueued_at=None, max_attempts=UnlearningJob.max_attempts + 1,
        message=reason[:200]).execution_options(synchronize_session=False)).rowcount
    if owned != 1:
        return False
    session.refresh(job)
    requeue_job(session, job, actor=worker, reason=reason, data={"attempt": attempt})
    log.warning("job %s attempt %s handed back to the queue: %s", job_id, attempt, reason)
    return True


def release_node(url: str, node: str, reason: str) -> list[str]:
    """Hand back every job a Celery node's tasks still hold (their owner is `<node>:<task id>`)."""
    with session_scope(url) as s:
        held = s.exec(select(UnlearningJob.id, UnlearningJob.worker, UnlearningJob.attempts).where(
            col(UnlearningJob.stage).in_(JOB_ACTIVE), col(UnlearningJob.worker).startswith(f"{node}:", autoescape=True))
        ).all()
        return [job_id for job_id, worker, attempt in held if release(s, job_id, worker, attempt, reason=reason)]


def draining() -> bool:
    """Whether this process is shutting down: it starts no new job."""
    return _draining.is_set()


def accept_work() -> None:
    """This process starts jobs again (a runtime started anew in the same process, as tests do)."""
    _draining.clear()


def hand_back_running(grace_s: float, reason: str) -> list[str]:
    """Shut down this process's attempts: claim nothing new, give those running `grace_s` seconds to
    finish, then hand back the rest. Returns the ids of the jobs handed back."""
    _draining.set()
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        with _live_lock:
            if not _live:
                return []
        time.sleep(0.1)
    with _live_lock:
        running = list(_live)
    return [h.job_id for h in running if h.hand_back(reason)]


def expired_jobs(session: Session, now: datetime | None = None) -> list[str]:
    now = now or utcnow()
    return list(session.exec(select(UnlearningJob.id).where(
        col(UnlearningJob.stage).in_(JOB_ACTIVE), UnlearningJob.lease_until < now)).all())
