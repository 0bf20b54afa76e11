"""Intake under load, in the production layout (PostgreSQL + Redis), and coalescing of a burst.

    python -m benchmarks.intake [--duration 15] [--burst 10000] [--processes 1,2,4]
    python -m benchmarks.intake --markdown-only   # rebuild intake.md from intake.json

1. `POST /v1/deletion-requests` at 1, 2 and 4 API processes (uvicorn workers), driven by `wrk` from a
   separate process on loopback: accepted requests per second, p50 and p99 latency. Before each, the
   ceiling: a bare FastAPI endpoint that does nothing, same request shape, same machine, measured right
   before (other work on the machine changes from minute to minute; the load average is recorded).
2. A Celery worker then serves everything. Lost requests are counted by id: every id a 202 answer named
   must be a row in the database, and every request must end completed.
3. A burst of `--burst` requests against one ACU model, with the worker running: how many jobs served it,
   and how long after the burst's end the last request completed.

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
from tests.procs import (
    ROOT,
    TEST_SALT,
    RedisServer,
    celery_worker,
    free_port,
    postgres_database,
    wait_for_port,
)
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
    load = os.getloadavg()[0]
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{int(duration)}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, env={**os.environ, **env}, timeout=duration + 600)
    m = re.search(r"RESULT accepted=(\d+) refused=(\d+) p50_us=(\d+) p99_us=(\d+) duration_us=(\d+)", out.stdout)
    if not m:
        raise RuntimeError(f"wrk gave no result:\n{out.stdout}\n{out.stderr}")
    accepted, refused, p50, p99, dur = (int(x) for x in m.groups())
    return {"accepted": accepted, "refused": refused, "accepted_per_s": round(accepted / (dur / 1e6), 1),
            "p50_ms": round(p50 / 1000, 2), "p99_ms": round(p99 / 1000, 2), "seconds": round(dur / 1e6, 2),
            "load_average_1min_before": round(load, 2)}


def accepted_ids(prefix: Path) -> list[str]:
    """The request ids that 202 answers named, as the wrk threads wrote them (`prefix`.<thread>)."""
    return [line for f in sorted(prefix.parent.glob(prefix.name + ".*")) for line in f.read_text().split()]


def lost(url: str, ids: list[str]) -> dict:
    """Which of the accepted `ids` the database does not hold (checked id by id, in chunks)."""
    missing: list[str] = []
    with session_scope(url) as s:
        for i in range(0, len(ids), 5000):
            chunk = ids[i:i + 5000]
            held = set(s.exec(select(DeletionRequest.id).where(col(DeletionRequest.id).in_(chunk))).all())
            missing += [r for r in chunk if r not in held]
    return {"accepted_ids": len(ids), "distinct": len(set(ids)), "lost": len(missing), "lost_ids": missing[:20]}


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


def wait_all_completed(url: str, timeout: float) -> float | None:
    """Seconds until every request is completed, or None when `timeout` passed first."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        total, by = count_requests(url)
        if by.get("completed", 0) == total:
            return time.monotonic() - start
        time.sleep(0.5)
    print(f"not all requests completed within {timeout} s: {by}", file=sys.stderr, flush=True)
    return None


def regenerate(results: Path = RESULTS) -> str:
    """The page (intake.md) as rebuilt from the stored intake.json under `results`: what --markdown-only writes."""
    return markdown(json.loads((results / "intake.json").read_text()))


def save(result: dict) -> None:
    """Write what has been measured so far: a run cut short (the drain, the burst) keeps its load figures."""
    (RESULTS / "intake.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "intake.md").write_text(markdown(result))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--burst", type=int, default=10_000)
    p.add_argument("--processes", default="1,2,4")
    p.add_argument("--markdown-only", action="store_true", help="rewrite intake.md from the stored intake.json")
    args = p.parse_args()
    if args.markdown_only:
        (RESULTS / "intake.md").write_text(regenerate())
        return 0
    if shutil.which("wrk") is None:
        print("benchmarks.intake: needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="intake-"))
    RESULTS.mkdir(exist_ok=True)
    redis_server = RedisServer(work / "redis", appendonly=True).start()
    result: dict = {"machine": {"cores": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
                    "load_generator": "wrk 4.1 (-t2 -c64), a separate process", "runs": []}
    try:
        with postgres_database() as db_url:
            settings = Settings(data_dir=work / "data", database_url=db_url, broker_url=redis_server.url,
                                batch_window_s=1.0, max_batch_requests=5000, rate_limit_per_minute=10**9,
                                subject_salt=TEST_SALT)
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
                   "UNLEARN_MAX_BATCH_REQUESTS": "5000", "UNLEARN_RATE_LIMIT_PER_MINUTE": str(10**9),
                   "UNLEARN_SUBJECT_SALT": TEST_SALT}
            lua_env = {"API_KEY": key, "IDS_FILE": str(ids_file), "MODEL": MODEL}

            ids: list[str] = []
            for n in [int(x) for x in args.processes.split(",")]:
                port = free_port()  # the ceiling right before each run: the machine's other load drifts
                with server(["benchmarks.bare_app:app", "--workers", str(n)], env, port, work / "bare.log") as url:
                    bare = wrk(url + "/v1/deletion-requests", LUA / "post_bare.lua", args.duration, lua_env)
                port = free_port()
                out = work / f"accepted-p{n}"
                with server(["--factory", "cli.asgi:build", "--workers", str(n)], env, port,
                            work / f"api{n}.log") as url:
                    run = wrk(url, LUA / "post_requests.lua", args.duration,
                              {**lua_env, "RUN": f"p{n}", "ACCEPTED_OUT": str(out)})
                ids += accepted_ids(out)
                run.update(processes=n, bare=bare, share_of_bare=round(run["accepted_per_s"] / bare["accepted_per_s"], 3))
                result["runs"].append(run)
                print(f"{n} process(es): bare {bare}\n  API {run}", flush=True)
                save(result)
            total, _ = count_requests(db_url)
            with celery_worker(env, log=work / "worker.log"):
                drain = wait_all_completed(db_url, timeout=1800) or float("nan")
                # wrk stops with requests in flight: the server may have stored a few whose 202 it never
                # received, so the database may hold more than the 202s named, never fewer.
                result["after_load"] = {"accepted": sum(r["accepted"] for r in result["runs"]), "in_database": total,
                                        **lost(db_url, ids), "seconds_to_complete_all": round(drain, 1)}
                print(f"after load: {result['after_load']}", flush=True)
                save(result)

                # The burst: coalescing against one ACU model while the worker runs.
                with session_scope(db_url) as s:
                    before = set(s.exec(select(UnlearningJob.id)).all())
                port = free_port()
                out = work / "accepted-burst"
                with server(["--factory", "cli.asgi:build", "--workers", "2"], env, port, work / "burst.log") as url:
                    start_count, _ = count_requests(db_url)
                    t_start = time.monotonic()
                    load = os.getloadavg()[0]
                    # wrk always runs its whole duration: stop it once the database holds the burst.
                    gen = subprocess.Popen(["wrk", "-t2", "-c64", "-d600s", "-s", str(LUA / "post_requests.lua"), url],
                                           env={**os.environ, **lua_env, "RUN": "burst", "LIMIT": str(args.burst // 2),
                                                "ACCEPTED_OUT": str(out)},
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    while count_requests(db_url)[0] - start_count < args.burst and gen.poll() is None:
                        time.sleep(0.1)
                    burst_end = time.monotonic()
                    gen.terminate()
                    gen.wait()
                    done_after = wait_all_completed(db_url, timeout=900)
                    burst_n = count_requests(db_url)[0] - start_count
                    _, unfinished = count_requests(db_url)
                with session_scope(db_url) as s:
                    new_jobs = s.exec(select(func.count(func.distinct(RequestTarget.job_id))).where(
                        col(RequestTarget.job_id).not_in(before))).one() if before else s.exec(
                        select(func.count(func.distinct(RequestTarget.job_id)))).one()
                    job_seconds = [(j.finished_at - j.started_at).total_seconds() for j in s.exec(
                        select(UnlearningJob).where(col(UnlearningJob.id).not_in(before))).all()
                        if j.finished_at and j.started_at]
                result["burst"] = {"requests": burst_n, "jobs": new_jobs, "load_average_1min_before": round(load, 2),
                                   "burst_seconds": round(burst_end - t_start, 1),
                                   "accepted_per_s": round(burst_n / (burst_end - t_start), 1),
                                   "completed_seconds_after_burst_end": None if done_after is None else
                                   round(done_after, 1), "by_status_at_the_end": unfinished,
                                   "job_seconds": [round(x, 1) for x in job_seconds], **lost(db_url, accepted_ids(out))}
                print(f"burst: {result['burst']}", flush=True)
            total, by = count_requests(db_url)
            result["final"] = {"requests": total, "by_status": by}
    finally:
        redis_server.stop()
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    save(result)
    print((RESULTS / "intake.md").read_text())
    return 0


def markdown(r: dict) -> str:
    lines = ["| server | processes | accepted req/s | p50 ms | p99 ms | refused | of bare | load avg |",
             "|---|---|---|---|---|---|---|---|"]
    for run in r["runs"]:
        b = run["bare"]
        lines.append(f"| bare FastAPI (ceiling), just before | {run['processes']} | {b['accepted_per_s']} | {b['p50_ms']} "
                     f"| {b['p99_ms']} | {b['refused']} | 100% | {b['load_average_1min_before']} |")
        lines.append(f"| unlearn API | {run['processes']} | {run['accepted_per_s']} | {run['p50_ms']} | "
                     f"{run['p99_ms']} | {run['refused']} | {run['share_of_bare']:.0%} | "
                     f"{run['load_average_1min_before']} |")
    best = max(r["runs"], key=lambda run: run["accepted_per_s"], default=None)
    if best is not None:
        met = best["accepted_per_s"] >= 1000 and best["p99_ms"] <= 50 and best["share_of_bare"] >= 0.25
        lines += ["", f"Target: at least 1,000 accepted req/s with p99 at most 50 ms and at least a quarter of the "
                  f"bare endpoint's rate; best here {best['accepted_per_s']} req/s at {best['processes']} process(es), "
                  f"p99 {best['p99_ms']} ms, {best['share_of_bare']:.0%} of bare: **{'met' if met else 'not met'}**."]
    a = r.get("after_load")
    if a is None:
        return "\n".join(lines) + "\n"
    lines += ["", f"Load from {r['load_generator']}, on {r['machine']['cores']} cores shared with other work (load "
              "average: the 1-minute figure before each run). Accepted (202) "
              f"{a['accepted']}; each 202 named its request's id, and {a['lost']} of those {a['accepted_ids']} ids "
              f"are missing from the database (lost); the database holds {a['in_database']} (requests in flight "
              f"when wrk stopped included). All completed {a['seconds_to_complete_all']} s after a worker started.", ""]
    if r.get("note"):
        lines += [r["note"], ""]
    if "burst" in r:
        bu = r["burst"]
        lines.append(f"Burst: {bu['requests']} requests in {bu['burst_seconds']} s ({bu['accepted_per_s']}/s, 2 API "
                     f"processes, load average {bu['load_average_1min_before']}) served by {bu['jobs']} jobs; " +
                     (f"the last completed {bu['completed_seconds_after_burst_end']} s after the burst ended"
                      if bu["completed_seconds_after_burst_end"] is not None else
                      f"not all completed 900 s after the burst ended ({bu['by_status_at_the_end']})") +
                     f"; lost by id: {bu['lost']} of {bu['accepted_ids']}.")
        done = bu["completed_seconds_after_burst_end"]
        met = bu["jobs"] <= 20 and done is not None and done <= 60 and bu["lost"] == 0
        lines.append(f"Target: at most 20 jobs, all completed within 60 s of the burst's end, none lost: "
                     f"**{'met' if met else 'not met'}**.")
    return "\n".join(lines) + "\n"



if __name__ == "__main__":
    sys.exit(main())
