"""Intake under load, in the production layout (PostgreSQL + Redis), and coalescing of a burst.

    python -m benchmarks.intake [--duration 15] [--burst 10000]

1. The ceiling: a bare FastAPI endpoint that does nothing, same request shape, same machine.
2. `POST /v1/deletion-requests` at 1, 2 and 4 API processes (uvicorn workers), driven by `wrk`
   from a separate process on loopback: accepted requests per second, p50 and p99 latency.
3. A Celery worker then serves everything; every accepted request must be in the database and
   end completed (zero lost).
4. A burst of `--burst` requests against one ACU model, with the worker running: how many jobs
   served it, and how long after the burst's end the last request completed.

Writes benchmarks/results/intake.json and intake.md. Needs `wrk` (Debian package) and
`redis-server`; PostgreSQL at UNLEARN_TEST_PG (default: the local test database).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from sqlmodel import col, func, select

from api.auth import create_api_key
from tests.procs import ROOT, RedisServer, celery_worker, free_port, postgres_database, wait_for_port
from unlearn import registry
from unlearn.data import get_dataset
from unlearn.settings import Settings
from unlearn.store.db import migrate, session_scope
from unlearn.store.models import DeletionRequest, RequestTarget, UnlearningJob
from unlearn.zoo import ensure

RESULTS = Path(__file__).parent / "results"
LUA = Path(__file__).parent / "lua"
MODEL = "synthetic-acu"


def wrk(url: str, script: Path, duration: float, env: dict[str, str], connections: int = 64) -> dict:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{int(duration)}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, env={**os.environ, **env}, timeout=duration + 600)
    m = re.search(r"RESULT accepted=(\d+) refused=(\d+) p50_us=(\d+) p99_us=(\d+) duration_us=(\d+)", out.stdout)
    if not m:
        raise RuntimeError(f"wrk gave no result:\n{out.stdout}\n{out.stderr}")
    accepted, refused, p50, p99, dur = (int(x) for x in m.groups())
    return {"accepted": accepted, "refused": refused, "accepted_per_s": round(accepted / (dur / 1e6), 1),
            "p50_ms": round(p50 / 1000, 2), "p99_ms": round(p99 / 1000, 2), "seconds": round(dur / 1e6, 2)}


@contextmanager
def server(args: list[str], env: dict[str, str], port: int, log: Path):
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", *args, "--host", "127.0.0.1", "--port", str(port),
                             "--log-level", "warning", "--no-access-log"], cwd=ROOT,
                            env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=open(log, "ab"))  # noqa: SIM115
    try:
        wait_for_port(port, timeout=120)
        time.sleep(1.0)  # every worker process up
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def count_requests(url: str, prefix_since: float | None = None) -> tuple[int, dict[str, int]]:
    with session_scope(url) as s:
        total = s.exec(select(func.count()).select_from(DeletionRequest)).one()
        by = dict(s.exec(select(DeletionRequest.status, func.count()).group_by(DeletionRequest.status)).all())
    return total, by


def wait_all_completed(url: str, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        total, by = count_requests(url)
        if by.get("completed", 0) == total:
            return time.monotonic() - start
        time.sleep(0.5)
    raise TimeoutError(f"not all requests completed: {by}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--burst", type=int, default=10_000)
    p.add_argument("--processes", default="1,2,4")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        print("benchmarks.intake: needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="intake-"))
    RESULTS.mkdir(exist_ok=True)
    redis_server = RedisServer(work / "redis", appendonly=True).start()
    result: dict = {"machine": {"cores": os.cpu_count()}, "runs": []}
    try:
        with postgres_database() as db_url:
            settings = Settings(data_dir=work / "data", database_url=db_url, broker_url=redis_server.url,
                                batch_window_s=1.0, max_batch_requests=5000, rate_limit_per_minute=10**9)
            migrate(db_url)
            folder = ensure(MODEL, Settings().zoo_dir)  # the cached zoo of this checkout
            t0 = time.perf_counter()
            with session_scope(db_url) as s:
                registry.import_model(s, name=MODEL, family="classifier", source_dir=folder,
                                      artifact_root=settings.resolved_artifact_root, salt=settings.subject_salt)
                key = create_api_key(s, "load", "submitter")
            result["register_seconds"] = round(time.perf_counter() - t0, 1)
            ids_file = work / "ids.txt"
            ids_file.write_text("\n".join(get_dataset({"name": "synthetic"}).ids_in("train")))
            env = {"UNLEARN_DATA_DIR": str(settings.data_dir), "UNLEARN_DATABASE_URL": db_url,
                   "UNLEARN_BROKER_URL": redis_server.url, "UNLEARN_BATCH_WINDOW_S": "1.0",
                   "UNLEARN_MAX_BATCH_REQUESTS": "5000", "UNLEARN_RATE_LIMIT_PER_MINUTE": str(10**9)}
            lua_env = {"API_KEY": key, "IDS_FILE": str(ids_file), "MODEL": MODEL}

            port = free_port()
            with server(["benchmarks.bare_app:app", "--workers", "1"], env, port, work / "bare.log") as url:
                bare = wrk(url + "/v1/deletion-requests", LUA / "post_bare.lua", args.duration, lua_env)
            result["ceiling_bare_fastapi"] = bare
            print(f"bare FastAPI, 1 process: {bare}")
            for n in [int(x) for x in args.processes.split(",")]:
                port = free_port()
                with server(["--factory", "cli.asgi:build", "--workers", str(n)], env, port,
                            work / f"api{n}.log") as url:
                    run = wrk(url, LUA / "post_requests.lua", args.duration, {**lua_env, "RUN": f"p{n}"})
                run["processes"] = n
                result["runs"].append(run)
                print(f"API, {n} process(es): {run}")
            accepted = sum(r["accepted"] for r in result["runs"])
            total, _ = count_requests(db_url)
            with celery_worker(env, log=work / "worker.log"):
                drain = wait_all_completed(db_url, timeout=1800)
                # wrk stops with requests in flight: the server may have stored a few whose 202 it never
                # counted, so the database can hold more than `accepted`, never fewer.
                result["after_load"] = {"accepted": accepted, "in_database": total, "lost": max(0, accepted - total),
                                        "seconds_to_complete_all": round(drain, 1)}
                print(f"after load: {result['after_load']}")

                # The burst: coalescing against one ACU model while the worker runs.
                with session_scope(db_url) as s:
                    before = set(s.exec(select(UnlearningJob.id)).all())
                port = free_port()
                with server(["--factory", "cli.asgi:build", "--workers", "2"], env, port, work / "burst.log") as url:
                    start_count, _ = count_requests(db_url)
                    t_start = time.monotonic()
                    # wrk always runs its whole duration: stop it once the database holds the burst.
                    gen = subprocess.Popen(["wrk", "-t2", "-c64", "-d600s", "-s", str(LUA / "post_requests.lua"), url],
                                           env={**os.environ, **lua_env, "RUN": "burst", "LIMIT": str(args.burst // 2)},
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    while count_requests(db_url)[0] - start_count < args.burst and gen.poll() is None:
                        time.sleep(0.1)
                    burst_end = time.monotonic()
                    gen.terminate()
                    gen.wait()
                    done_after = wait_all_completed(db_url, timeout=900)
                    burst_n = count_requests(db_url)[0] - start_count
                with session_scope(db_url) as s:
                    new_jobs = s.exec(select(func.count(func.distinct(RequestTarget.job_id))).where(
                        col(RequestTarget.job_id).not_in(before))).one() if before else s.exec(
                        select(func.count(func.distinct(RequestTarget.job_id)))).one()
                result["burst"] = {"requests": burst_n, "jobs": new_jobs,
                                   "burst_seconds": round(burst_end - t_start, 1),
                                   "accepted_per_s": round(burst_n / (burst_end - t_start), 1),
                                   "completed_seconds_after_burst_end": round(done_after, 1)}
                print(f"burst: {result['burst']}")
            total, by = count_requests(db_url)
            result["final"] = {"requests": total, "by_status": by}
    finally:
        redis_server.stop()
    (RESULTS / "intake.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "intake.md").write_text(markdown(result))
    print((RESULTS / "intake.md").read_text())
    return 0


def markdown(r: dict) -> str:
    lines = ["| server | processes | accepted req/s | p50 ms | p99 ms | refused |", "|---|---|---|---|---|---|"]
    b = r["ceiling_bare_fastapi"]
    lines.append(f"| bare FastAPI (ceiling) | 1 | {b['accepted_per_s']} | {b['p50_ms']} | {b['p99_ms']} | {b['refused']} |")
    for run in r["runs"]:
        lines.append(f"| unlearn API | {run['processes']} | {run['accepted_per_s']} | {run['p50_ms']} | "
                     f"{run['p99_ms']} | {run['refused']} |")
    a = r["after_load"]
    lines += ["", f"Accepted {a['accepted']}, in the database {a['in_database']}, lost {a['lost']}; all completed "
              f"{a['seconds_to_complete_all']} s after a worker started.", ""]
    if "burst" in r:
        bu = r["burst"]
        lines.append(f"Burst: {bu['requests']} requests in {bu['burst_seconds']} s served by {bu['jobs']} jobs; the "
                     f"last completed {bu['completed_seconds_after_burst_end']} s after the burst ended.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
