"""The embedded runtime: a Celery worker thread on the in-memory broker, in this process.

`unlearn demo` and `unlearn serve` (without a broker URL) use it: no Redis, no separate
worker. The database stays the system of record, so a crash loses no accepted request;
the reconciler re-enqueues its jobs on the next start.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from celery import Celery
from celery.contrib.testing.worker import start_worker

from unlearn.lease import accept_work, hand_back_running
from unlearn.settings import Settings
from workers import heartbeat
from workers.celery_app import make_celery

NODES = {"gpu": "embedded-gpu@localhost", "cpu": "embedded-cpu@localhost"}
# How long a worker thread is waited for once its job was finished or handed back.
JOIN_S = 10.0

log = logging.getLogger(__name__)


@contextmanager
def embedded_worker(settings: Settings) -> Iterator[Celery]:
    import torch

    torch.set_num_threads(settings.torch_threads)
    accept_work()
    app = make_celery(settings)
    app.set_current()
    app.set_default()
    import workers.tasks as tasks  # noqa: F401  (registers the shared tasks on this app)

    stop = threading.Event()
    # Stands in for beat: every periodic task of the beat schedule (the reconciler, the compliance
    # sweep), each at its own interval, so that `unlearn serve` alone is a complete service.
    loops = [threading.Thread(target=_periodic, args=(app, entry["task"], float(entry["schedule"]), stop),
                              name=f"unlearn-beat-{name}", daemon=True)
             for name, entry in periodic_schedule(app).items()]

    # Two worker threads: bookkeeping (queue cpu) never waits behind a long job (queue gpu).
    with _worker_thread(app, "gpu"), _worker_thread(app, "cpu"):
        for queue, node in NODES.items():
            heartbeat.start(settings, node, queue)
        app.tasks["ops.reconcile"].delay()  # pick up whatever an earlier run left behind
        for thread in loops:
            thread.start()
        try:
            yield app
        finally:
            stop.set()
            # A running job gets the grace period to finish; then it is handed back to the queue
            # rather than left holding its lease until the lease runs out.
            for job_id in hand_back_running(settings.shutdown_grace_s, reason="handed back at shutdown"):
                log.warning("job %s was handed back to the queue at shutdown", job_id)
            for node in NODES.values():
                heartbeat.stop(node)


def periodic_schedule(app: Celery) -> dict[str, dict]:
    """The beat schedule the embedded runtime runs itself: the same entries a beat process would send."""
    return dict(app.conf.beat_schedule)


def _periodic(app: Celery, task: str, every_s: float, stop: threading.Event) -> None:
    """Send `task` every `every_s` seconds until `stop` (the first after one interval, as beat does)."""
    while not stop.wait(every_s):
        try:
            app.tasks[task].delay()
        except Exception:  # one failed send must not end the schedule
            log.exception("could not send the periodic task %s", task)


@contextmanager
def _worker_thread(app: Celery, queue: str) -> Iterator[None]:
    """One solo worker thread on `queue`. At exit its job, if any, is finished or handed back already: a
    thread still inside a method that reports no progress is left to end with the process (a daemon)."""
    body_error: BaseException | None = None
    try:
        with start_worker(app, pool="solo", concurrency=1, perform_ping_check=False, shutdown_timeout=JOIN_S,
                          queues=[queue], loglevel="WARNING", hostname=NODES[queue]):
            try:
                yield
            except BaseException as exc:
                body_error = exc
                raise
    except RuntimeError as exc:  # start_worker's "failed to exit within the allocated timeout"
        if "failed to exit" not in str(exc):
            raise
        log.warning("the %s worker thread was still busy at shutdown; its job was handed back", queue)
        if body_error is not None:  # what ended the caller's work (a timeout, say) is still the caller's error
            raise body_error from None


def coalesce_sender(app: Celery):
    def send(delay_s: float) -> None:
        app.tasks["ops.coalesce"].apply_async(kwargs={"force": True}, countdown=delay_s)
    return send
