"""Worker heartbeats: each worker writes its `WorkerHeartbeat` row every few seconds.

A thread in every process that runs tasks (a prefork pool child, or the worker itself with the
solo pool; started on Celery's `worker_process_init`, or `worker_ready` for other pools, or by
the embedded runtime) records that the node is alive, its device and, on a GPU, the device's
memory in use. Never in a prefork parent: a database connection open there at a fork would
be inherited by the new child. The job a worker is running is written by the task itself
(`running_job`).

Heartbeats are bookkeeping: they use short lock timeouts and keep no connection between writes,
so a busy database delays a job by seconds at most and never fails it.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutdown
from sqlalchemy import create_engine, update
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from unlearn.settings import Settings
from unlearn.store.models import WorkerHeartbeat, utcnow

log = logging.getLogger(__name__)

_beats: dict[str, Heartbeat] = {}
_engines: dict[str, Engine] = {}
_lock = threading.Lock()
_engines_lock = threading.Lock()


@contextmanager
def _unpooled_session(url: str) -> Iterator[Session]:
    """A session with a short lock timeout, whose connection is closed when it ends."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            if url.startswith("sqlite"):
                args: dict = {"check_same_thread": False, "timeout": 2}
            else:
                args = {"options": "-c lock_timeout=2000 -c statement_timeout=5000"}
            engine = _engines[url] = create_engine(url, poolclass=NullPool, connect_args=args)
    with Session(engine, expire_on_commit=False) as s:
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise


def gpu_memory_mb(device: str) -> tuple[float | None, float | None]:
    """(used, total) MiB of the worker's GPU, or (None, None) without one we may look at."""
    if not device.startswith("cuda"):
        return None, None
    try:
        import torch

        if not torch.cuda.is_available():
            return None, None
        index = torch.device(device).index or 0
        if torch.cuda.is_initialized():
            free, total = torch.cuda.mem_get_info(index)
            return (total - free) / 2**20, total / 2**20
        import pynvml  # optional; never initialises CUDA

        pynvml.nvmlInit()
        info = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index))
        return info.used / 2**20, info.total / 2**20
    except Exception:  # no NVML, no driver: the row simply shows no memory figure
        return None, None


def beat(settings: Settings, worker: str, queues: str = "") -> None:
    """Upsert this worker's row (never touching `current_job_id`, which the task owns)."""
    used, total = gpu_memory_mb(settings.device)
    now = utcnow()
    with _unpooled_session(settings.resolved_database_url) as s:
        row = s.get(WorkerHeartbeat, worker)
        if row is None:
            row = WorkerHeartbeat(worker=worker, started_at=now)
        row.hostname, row.queues, row.device = socket.gethostname()[:128], queues[:64], settings.device
        row.gpu_memory_mb, row.gpu_memory_total_mb, row.seen_at = used, total, now
        s.add(row)


@contextmanager
def running_job(settings: Settings, worker: str, job_id: str) -> Iterator[None]:
    """Show `job_id` as the worker's current job while the block runs."""
    _set_job(settings, worker, job_id, expect=None)
    try:
        yield
    finally:
        _set_job(settings, worker, None, expect=job_id)


def _set_job(settings: Settings, worker: str, job_id: str | None, *, expect: str | None) -> None:
    try:
        with _unpooled_session(settings.resolved_database_url) as s:
            stmt = update(WorkerHeartbeat).where(WorkerHeartbeat.worker == worker)
            if expect is not None:  # clear only our own job
                stmt = stmt.where(WorkerHeartbeat.current_job_id == expect)
            if s.execute(stmt.values(current_job_id=job_id, seen_at=utcnow())).rowcount == 0 and job_id:
                s.add(WorkerHeartbeat(worker=worker, hostname=socket.gethostname()[:128], device=settings.device,
                                      current_job_id=job_id))
    except Exception as exc:  # bookkeeping must never fail a job
        log.warning("heartbeat of %s: %s", worker, exc)


class Heartbeat(threading.Thread):
    def __init__(self, settings: Settings, worker: str, queues: str = "") -> None:
        super().__init__(name=f"heartbeat-{worker}", daemon=True)
        self.settings, self.worker, self.queues = settings, worker, queues
        self.stop_event = threading.Event()

    def run(self) -> None:
        while True:
            try:
                beat(self.settings, self.worker, self.queues)
            except Exception as exc:  # a database hiccup: try again next time
                log.warning("heartbeat of %s: %s", self.worker, exc)
            if self.stop_event.wait(self.settings.heartbeat_interval_s):
                return

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)


def start(settings: Settings, worker: str, queues: str = "") -> Heartbeat:
    """Start (once per worker name in this process) and return the worker's heartbeat thread."""
    with _lock:
        hb = _beats.get(worker)
        if hb is None or not hb.is_alive():
            hb = _beats[worker] = Heartbeat(settings, worker, queues)
            hb.start()
        return hb


def stop(worker: str) -> None:
    with _lock:
        hb = _beats.pop(worker, None)
    if hb is not None:
        hb.stop()


def _start_for(app: Celery, node: str | None) -> None:
    settings = getattr(app.conf, "unlearn_settings", None)
    if settings is None or not node:
        return
    try:
        queues = ",".join(sorted(app.amqp.queues.consume_from))
    except Exception:
        queues = ""
    start(settings, node, queues)


@worker_process_init.connect
def _on_process_init(sender=None, **_kwargs) -> None:
    """A process that runs tasks starts (sender: the node name)."""
    from celery import current_app

    _start_for(current_app, sender)


@worker_ready.connect
def _on_worker_ready(sender=None, **_kwargs) -> None:
    """Pools without `worker_process_init` (threads): the worker process runs the tasks itself."""
    if type(sender.pool).__module__.endswith(".prefork"):
        return  # its children report; see the module's docstring
    _start_for(sender.app, sender.hostname)


@worker_shutdown.connect
def _on_worker_shutdown(sender=None, **_kwargs) -> None:
    name = getattr(sender, "hostname", None)
    if name:
        stop(name)
