"""Real processes for integration and fault tests: redis-server, Celery workers, PostgreSQL databases."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("UNLEARN_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
# `unlearn serve`, `worker` and `beat` refuse the default subject salt with a production broker. A test that
# starts one passes this to its in-process settings too: subjects must hash alike on both sides.
TEST_SALT = "unlearn-test-salt"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def app_server(app, timeout: float = 30.0):
    """Serve an ASGI app with uvicorn on a loopback port in a thread of this process; yields its base URL."""
    import threading

    import uvicorn

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    if not srv.started:
        raise TimeoutError("the API server did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


class RedisServer:
    """A private redis-server on a free port (optionally with AOF), restartable and wipeable."""

    def __init__(self, workdir: Path, appendonly: bool = False) -> None:
        self.port, self.workdir, self.appendonly = free_port(), workdir, appendonly
        self.proc: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed")
        args = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.workdir),
                "--appendonly", "yes" if self.appendonly else "no", "--maxmemory-policy", "noeviction"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)


@contextmanager
def celery_worker(env: dict[str, str], *, queues: str = "gpu,cpu", name: str | None = None,
                  log: Path | None = None, extra: list[str] | None = None):
    """A real `celery worker` process (prefork, one child) with the given UNLEARN_* environment."""
    name = name or f"w{uuid.uuid4().hex[:6]}@localhost"
    cmd = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", queues, "-c", "1",
           "-P", "prefork", "--prefetch-multiplier", "1", "-n", name, "--loglevel", "INFO", *(extra or [])]
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if log:
            out.close()


@contextmanager
def postgres_database():
    """A fresh PostgreSQL database for one test module, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"unlearn_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        from unlearn.store.db import get_engine

        get_engine.cache_clear()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
