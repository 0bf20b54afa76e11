"""The Celery application, configured for long GPU jobs.

acks_late + reject_on_worker_lost: a crashed worker's job goes back to the queue; the job's
attempt cap (in the database) stops poison loops. Prefetch 1: nothing waits behind a long job
on a worker that could not start it. The visibility timeout exceeds the hard time limit, so
Redis never redelivers a job that is still within its limit; when it does (a longer job), the
database lease stops the second delivery from running it concurrently.
"""

from __future__ import annotations

import logging
import threading

from celery import Celery
from celery.signals import worker_process_init, worker_shutting_down

from unlearn.lease import release_node
from unlearn.methods import register_method
from unlearn.plugins import load_entry_points
from unlearn.settings import Settings, get_settings


def make_celery(settings: Settings) -> Celery:
    broker = settings.broker_url
    if settings.embedded and not broker.removeprefix("memory://").strip("/"):
        # kombu warns "No hostname was supplied" at every connection to a URL without a host
        broker = "memory://localhost/"
    app = Celery("unlearn", broker=broker, include=["workers.tasks"])
    backend = settings.result_backend or ("cache+memory://" if settings.embedded else None)
    vt = {"visibility_timeout": settings.visibility_timeout_s}
    broker_options = {**vt, "unacked_restore_interval": settings.restore_interval_s, "unacked_restore_throttle": 1}
    app.conf.update(
        result_backend=backend,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit_s,
        task_soft_time_limit=settings.task_soft_time_limit_s,
        broker_transport_options=broker_options,
        result_backend_transport_options=vt,
        visibility_timeout=settings.visibility_timeout_s,
        task_routes={"unlearn.*": {"queue": "gpu"}, "verify.*": {"queue": "gpu"},
                     "ops.*": {"queue": "cpu"}, "compliance.*": {"queue": "cpu"}},
        task_default_queue="cpu",
        task_serializer="json", accept_content=["json"], result_serializer="json",
        task_track_started=True,
        worker_send_task_events=True, task_send_sent_event=True,
        worker_soft_shutdown_timeout=30,
        broker_connection_retry_on_startup=True,
        beat_schedule={
            "reconcile": {"task": "ops.reconcile", "schedule": settings.reconcile_interval_s},
            "compliance": {"task": "ops.compliance_sweep", "schedule": settings.compliance_interval_s},
        },
        timezone="UTC",
    )
    app.conf.unlearn_settings = settings
    settings.install_artifact_store()  # versions come from, and go to, the shared store when there is one
    for name, target in settings.extra_methods.items():  # methods from outside the package
        register_method(name, target)
    for plugin, error in load_entry_points().items():  # families, methods, architectures of installed packages
        log.error("plugin %s cannot be loaded: %s", plugin, error)
    return app


def job_sender(app: Celery):
    """`enqueue_jobs` for the API: sends job ids (an operator's retries) to the workers."""
    def send(job_ids: list[str]) -> None:
        for job_id in job_ids:
            app.send_task("unlearn.run_job", (job_id,))
    return send


app = make_celery(get_settings())
log = logging.getLogger(__name__)


@worker_shutting_down.connect
def _hand_back_at_shutdown(sender=None, how=None, **_kwargs) -> None:
    """The worker (its main process; `sender` is its node name) begins to shut down.

    Warm (SIGTERM): Celery waits for the running job. After the grace period it is handed back to the
    queue; the attempt stops at its next progress report, and the shutdown completes. Cold (SIGQUIT):
    the running tasks are cancelled (after Celery's soft-shutdown wait): their jobs are handed back at
    once. Either way a clean shutdown leaves no job holding its lease; only a crash waits for it."""
    settings = getattr(app.conf, "unlearn_settings", None)
    if settings is None or not sender:
        return

    def hand_back() -> None:
        try:
            for job_id in release_node(settings.resolved_database_url, sender, f"handed back at {how} shutdown"):
                log.warning("job %s was handed back to the queue at shutdown", job_id)
        except Exception:  # the database is away too: the leases run out as after a crash
            log.exception("handing back %s's jobs at shutdown failed", sender)

    # A thread, not the signal handler: this is database work. A warm shutdown ends when the job does,
    # and the timer (a daemon) with it; a cold one must not exit before the hand-back is written.
    timer = threading.Timer(settings.shutdown_grace_s if how == "Warm" else 0.0, hand_back)
    timer.daemon = how == "Warm"
    timer.start()


@worker_process_init.connect
def _init_process(**_kwargs) -> None:
    # Per child, never in the parent: CUDA must not be initialised before a fork.
    import torch

    torch.set_num_threads(get_settings().torch_threads)
