"""Celery tasks. Messages carry only ids; every task re-reads the database."""

from __future__ import annotations

import logging
import socket

import kombu.exceptions
import redis.exceptions
from celery import current_app as app
from celery import shared_task

from unlearn import jobs, lease, operations
from unlearn.settings import Settings
from unlearn.store.db import session_scope
from workers import heartbeat

log = logging.getLogger(__name__)


def _settings() -> Settings:
    return app.conf.unlearn_settings


def enqueue_jobs(job_ids: list[str], countdown: float = 0.0) -> None:
    for job_id in job_ids:
        run_job.apply_async((job_id,), countdown=countdown or None)


# The database or the broker away, a device out of memory: Celery sends the task again with exponential
# backoff and jitter. The attempt cap in the database still bounds the job (each delivery claims an
# attempt). The longest wait (60 s) stays below the default visibility timeout; were a delivery doubled,
# the database lease would stop the second one.
RETRY_ON = (jobs.TransientJobError, *jobs.TRANSIENT_ERRORS, kombu.exceptions.OperationalError,
            redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


@shared_task(name="unlearn.run_job", bind=True, autoretry_for=RETRY_ON, retry_backoff=True, retry_backoff_max=60,
             retry_jitter=True, max_retries=10)
def run_job(self, job_id: str) -> str:
    settings = _settings()
    if lease.draining():  # shutting down: the job stays queued, and the reconciler sends it again
        return "skipped"
    worker = f"{self.request.hostname or socket.gethostname()}:{self.request.id}"
    with heartbeat.running_job(settings, self.request.hostname or socket.gethostname(), job_id):
        outcome = jobs.run_job(settings, job_id, worker)
    log.info("job %s: %s %s", job_id, outcome.status, outcome.detail[:200])
    if outcome.status in ("retry", "busy"):
        # Re-send rather than Celery's retry: the delay stays below the visibility timeout.
        delay = min(max(outcome.retry_in, 1.0), settings.visibility_timeout_s / 4)
        run_job.apply_async((job_id,), countdown=delay)
    return outcome.status


@shared_task(name="ops.coalesce")
def coalesce(force: bool = False) -> list[str]:
    from unlearn.coalesce import coalesce as do_coalesce

    settings = _settings()
    with session_scope(settings.resolved_database_url) as s:
        job_ids = do_coalesce(s, settings, force=force)
    enqueue_jobs(job_ids)  # after commit: a worker must find the job row
    return job_ids


@shared_task(name="ops.reconcile")
def reconcile() -> list[str]:
    settings = _settings()
    with session_scope(settings.resolved_database_url) as s:
        job_ids = operations.reconcile(s, settings)
    enqueue_jobs(job_ids)
    return job_ids


@shared_task(name="verify.compliance_check")
def compliance_check(model_name: str, trigger: str = "schedule") -> dict:
    from unlearn.compliance import check_model

    settings = _settings()
    with session_scope(settings.resolved_database_url) as s:
        check = check_model(s, settings, model_name, trigger)
        result = {"model": model_name, "passed": check.passed, "regression": check.regression,
                  "reopened": list(check.reopened_request_ids)}
    if result["reopened"]:
        coalesce.delay(force=True)  # the reopened requests are served again right away
    return result


@shared_task(name="ops.compliance_sweep")
def compliance_sweep() -> list[str]:
    from sqlmodel import select

    from unlearn.store.models import Model

    settings = _settings()
    with session_scope(settings.resolved_database_url) as s:
        names = list(s.exec(select(Model.name)).all())
    for name in names:
        compliance_check.delay(name, "schedule")
    return names
