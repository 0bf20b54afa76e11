"""The embedded runtime: a Celery worker thread on the in-memory broker, in this process.

`unlearn demo` and `unlearn serve` (without a broker URL) use it: no Redis, no separate
worker. The database stays the system of record, so a crash loses no accepted request;
the reconciler re-enqueues its jobs on the next start.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from celery import Celery
from celery.contrib.testing.worker import start_worker

from unlearn.settings import Settings
from workers import heartbeat
from workers.celery_app import make_celery

NODES = {"gpu": "embedded-gpu@localhost", "cpu": "embedded-cpu@localhost"}


@contextmanager
def embedded_worker(settings: Settings) -> Iterator[Celery]:
    import torch

    torch.set_num_threads(settings.torch_threads)
    app = make_celery(settings)
    app.set_current()
    app.set_default()
    import workers.tasks as tasks  # noqa: F401  (registers the shared tasks on this app)

    stop = threading.Event()

    def reconcile_loop() -> None:  # stands in for beat
        while not stop.wait(settings.reconcile_interval_s):
            app.tasks["ops.reconcile"].delay()

    # Two worker threads: bookkeeping (queue cpu) never waits behind a long job (queue gpu).
    with start_worker(app, pool="solo", concurrency=1, perform_ping_check=False, shutdown_timeout=600.0,
                      queues=["gpu"], loglevel="WARNING", hostname=NODES["gpu"]), \
            start_worker(app, pool="solo", concurrency=1, perform_ping_check=False, shutdown_timeout=60.0,
                         queues=["cpu"], loglevel="WARNING", hostname=NODES["cpu"]):
        for queue, node in NODES.items():
            heartbeat.start(settings, node, queue)
        app.tasks["ops.reconcile"].delay()  # pick up whatever an earlier run left behind
        thread = threading.Thread(target=reconcile_loop, name="unlearn-reconcile", daemon=True)
        thread.start()
        try:
            yield app
        finally:
            stop.set()
            for node in NODES.values():
                heartbeat.stop(node)


def coalesce_sender(app: Celery):
    def send(delay_s: float) -> None:
        app.tasks["ops.coalesce"].apply_async(kwargs={"force": True}, countdown=delay_s)
    return send
