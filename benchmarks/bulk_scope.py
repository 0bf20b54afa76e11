"""A deletion request over a million sample ids: a partner revokes a whole data source.

    python -m benchmarks.bulk_scope [--forget 1000000] [--keep 200000] [--buffer 256]
    python -m benchmarks.bulk_scope --markdown-only   # rebuild bulk_scope.md from bulk_scope.json

1. A synthetic analytic-head classifier (the ACU family's architecture; `--buffer` random features) is
   trained on `--forget` + `--keep` samples and registered in a fresh PostgreSQL database (its records
   go in with one COPY).
2. The API runs in this process behind uvicorn; the `--forget` ids go up as one NDJSON upload to
   `POST /v1/deletion-requests/bulk` (the largest form: Parquet is smaller). Timed from the first byte
   sent to the 202, the target is at most 30 s.
3. The batcher makes its job(s) and a worker (`unlearn.jobs.run_job`, in this process) serves them:
   ACU's downdate, then the verifier (for ACU, against the parent's sufficient statistics:
   `unlearn.verify.exact`), then the promotion. Timed, with the number of jobs (target: one) and the verdict.

Writes benchmarks/results/bulk_scope.json and bulk_scope.md. PostgreSQL at UNLEARN_TEST_PG (default: the
local test database's server). Single-threaded torch (UNLEARN_TORCH_THREADS, default 1).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from tests.procs import app_server, postgres_database
from unlearn import registry
from unlearn.coalesce import coalesce
from unlearn.jobs import run_job
from unlearn.settings import Settings
from unlearn.store.db import migrate, session_scope
from unlearn.store.models import DeletionRequest, ModelVersion, UnlearningJob
from unlearn.zoo import train_on_split

RESULTS = Path(__file__).parent / "results"


def _model(folder: Path, forget: int, keep: int, buffer: int) -> None:
    meta = {"family": "classifier", "model": "synthetic-bulk", "arch": "analytic", "seed": 0,
            "dataset": {"name": "synthetic", "n": forget + keep, "seed": 0, "n_holdout": 10_000, "n_test": 10_000},
            "in_features": 32, "num_classes": 10, "backbone": "identity", "buffer_size": buffer, "gamma": 1.0}
    train_on_split(meta, folder)


def regenerate(results: Path = RESULTS) -> str:
    """The page (bulk_scope.md) as rebuilt from the stored bulk_scope.json under `results`: what --markdown-only
    writes."""
    return _markdown(json.loads((results / "bulk_scope.json").read_text()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--forget", type=int, default=1_000_000)
    ap.add_argument("--keep", type=int, default=200_000)
    ap.add_argument("--buffer", type=int, default=256)
    ap.add_argument("--markdown-only", action="store_true", help="rewrite bulk_scope.md from bulk_scope.json")
    args = ap.parse_args()
    if args.markdown_only:
        (RESULTS / "bulk_scope.md").write_text(regenerate())
        return
    out: dict = {"forget": args.forget, "keep": args.keep, "buffer": args.buffer, "machine": platform.machine(),
                 "cpus": os.cpu_count(), "torch_threads": int(os.environ.get("UNLEARN_TORCH_THREADS", "1")),
                 "load": round(os.getloadavg()[0], 1)}
    with tempfile.TemporaryDirectory() as tmp, postgres_database() as db:
        tmp = Path(tmp)
        settings = Settings(data_dir=tmp / "data", database_url=db, max_bulk_body_bytes=256 * 1024 * 1024,
                            subject_salt="bench-salt")
        migrate(db)
        t = time.perf_counter()
        _model(tmp / "model", args.forget, args.keep, args.buffer)
        out["train_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        with session_scope(db) as s:
            registry.import_model(s, name="synthetic-bulk", family="classifier", source_dir=tmp / "model",
                                  artifact_root=settings.resolved_artifact_root, salt=settings.subject_salt)
        out["register_s"] = round(time.perf_counter() - t, 1)
        from api.app import create_app
        from api.auth import create_api_key

        with session_scope(db) as s:
            key = create_api_key(s, "partner", "submitter")
        from unlearn.data.synthetic import load

        ids = [i for i, sp in zip(load(args.forget + args.keep, 0, 10_000, 10_000).ids,
                                  load(args.forget + args.keep, 0, 10_000, 10_000).split, strict=True)
               if sp == "train"][:args.forget]
        body = "\n".join(json.dumps({"sample_id": i}) for i in ids).encode()
        out["upload_bytes"] = len(body)
        with app_server(create_app(settings)) as url:
            t = time.perf_counter()
            r = httpx.post(f"{url}/v1/deletion-requests/bulk", params={"model": "synthetic-bulk"}, content=body,
                           headers={"X-API-Key": key, "Content-Type": "application/x-ndjson",
                                    "Idempotency-Key": uuid.uuid4().hex}, timeout=600)
            out["accept_s"] = round(time.perf_counter() - t, 2)
        if r.status_code != 202:
            raise SystemExit(f"the upload was refused: {r.status_code} {r.text[:300]}")
        rid = r.json()["id"]
        t = time.perf_counter()
        with session_scope(db) as s:
            job_ids = coalesce(s, settings, force=True)
        out["batch_s"] = round(time.perf_counter() - t, 2)
        out["jobs"] = len(job_ids)
        t = time.perf_counter()
        for job_id in job_ids:
            run_job(settings, job_id, worker="bench")
        out["serve_s"] = round(time.perf_counter() - t, 1)
        with session_scope(db) as s:
            req = s.get(DeletionRequest, rid)
            job = s.get(UnlearningJob, job_ids[0])
            version = s.get(ModelVersion, job.result_version_id) if job.result_version_id else None
            out["status"] = req.status
            out["verdict"] = version.verdict if version else None
            out["method"] = version.method if version else None
            out["unlearn_s"] = round((version.method_info or {}).get("seconds", float("nan")), 1) if version else None
            out["excluded"] = len(version.excluded_ids) if version else None
        out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bulk_scope.json").write_text(json.dumps(out, indent=2))
    (RESULTS / "bulk_scope.md").write_text(_markdown(out))
    print(_markdown(out))


def _markdown(o: dict) -> str:
    return "\n".join([
        f"### A request over {o['forget']:,} sample ids",
        "",
        f"A synthetic analytic-head classifier trained on {o['forget'] + o['keep']:,} samples ({o['buffer']} random "
        f"features); the partner revokes {o['forget']:,} of them as one NDJSON upload "
        f"({o['upload_bytes'] / 1e6:.1f} MB) to `POST /v1/deletion-requests/bulk`. PostgreSQL, "
        f"{o['cpus']} cores, {o['torch_threads']} torch thread(s); load average {o.get('load', '?')} at the start.",
        "",
        "| step | seconds |",
        "|---|---:|",
        f"| train the model (not part of the request) | {o['train_s']} |",
        f"| register it ({o['forget'] + o['keep']:,} records) | {o['register_s']} |",
        f"| **upload accepted (202)** (target ≤ 30 s) | **{o['accept_s']}** |",
        f"| batching into jobs: {o['jobs']} job(s) | {o['batch_s']} |",
        f"| serving: {o['method']}, its verification, the promotion and the certificate | {o['serve_s']} |",
        f"| of which the method itself | {o['unlearn_s']} |",
        "",
        f"Outcome: request **{o['status']}**, verdict {o['verdict']}, the new version excludes "
        f"{o['excluded']:,} samples; peak resident memory {o['peak_rss_gb']} GB. "
        "Reproduce: `python -m benchmarks.bulk_scope`.",
        "",
    ])


if __name__ == "__main__":
    main()
