"""Importing a team's training records (the lineage a deletion request is resolved against) at scale.

    python -m benchmarks.lineage_import [--records 1000000] [--small 10000] [--lookups 200]
    python -m benchmarks.lineage_import --markdown-only   # rebuild lineage_import.md from its JSON

1. A Parquet manifest of `--records` rows (sample id, owner, label; 20 rows per owner) is read with
   `datasets`, checked and hashed row by row (`records.normalise`), saved as a records folder and
   inserted into a fresh PostgreSQL database with COPY (`store.bulk.insert_training_records`), in one
   transaction. Each stage is timed; the target is the whole import within 60 s on this machine.
2. A subject lookup, as intake resolves a subject request (hash, then every train record of that
   subject across models), timed over `--lookups` random owners at `--small` records and at
   `--records`: the target is the large table's median within 2x of the small one's.

Writes benchmarks/results/lineage_import.json and lineage_import.md. PostgreSQL at UNLEARN_TEST_PG
(default: the local test database's server).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.procs import postgres_database
from unlearn.contracts import SampleRecord
from unlearn.data import records
from unlearn.intake import DeletionRequestIn, _resolve
from unlearn.settings import Settings
from unlearn.store.bulk import insert_training_records
from unlearn.store.db import migrate, session_scope
from unlearn.store.models import Model

RESULTS = Path(__file__).parent / "results"
PER_OWNER = 20


def _manifest(path: Path, n: int) -> None:
    pq.write_table(pa.table({"sample_id": [f"s-{i:08d}" for i in range(n)],
                             "owner": [f"owner-{i // PER_OWNER:07d}" for i in range(n)],
                             "label": np.arange(n, dtype=np.int64) % 10}), path)


def _import(url: str, manifest: Path, folder: Path, salt: str) -> dict[str, float]:
    """One model's records, timed by stage; returns seconds per stage and the rows inserted."""
    t = [time.perf_counter()]
    ds = records.read_table(manifest)
    t.append(time.perf_counter())
    rows, shape = records.normalise(ds, records.FieldMap(id="sample_id", subject="owner", label="label"), salt=salt,
                                    source=manifest.name)
    t.append(time.perf_counter())
    records.save(rows, folder, image_shape=shape)
    t.append(time.perf_counter())
    with session_scope(url) as s:
        s.add(Model(name="bench", family="classifier"))
        s.flush()
        n = insert_training_records(s, "bench", (SampleRecord(sample_id=r["sample_id"], subject_hash=r["subject_hash"],
                                                              label=r["label"], split=r["split"]) for r in rows))
    t.append(time.perf_counter())
    stages = dict(zip(("read_s", "normalise_s", "save_s", "insert_s"), np.diff(t).round(3).tolist(), strict=True))
    return {**stages, "total_s": round(t[-1] - t[0], 3), "rows": n}


def _lookups(url: str, settings: Settings, n_records: int, k: int, seed: int = 0) -> list[float]:
    owners = np.random.default_rng(seed).integers(0, n_records // PER_OWNER, size=k)
    out = []
    with session_scope(url) as s:
        for o in owners:
            body = DeletionRequestIn(scope={"type": "subject", "subject": f"owner-{o:07d}"})
            t0 = time.perf_counter()
            targets, _ = _resolve(s, body, settings)
            out.append((time.perf_counter() - t0) * 1000)
            assert len(targets["bench"]) == PER_OWNER
    return out


def run(n_large: int, n_small: int, k: int) -> dict:
    result: dict = {"records": n_large, "per_owner": PER_OWNER}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label, n in (("small", n_small), ("large", n_large)):
            manifest = tmp / f"{label}.parquet"
            _manifest(manifest, n)
            with postgres_database() as url:
                migrate(url)
                settings = Settings(data_dir=tmp / label, database_url=url)
                stages = _import(url, manifest, tmp / f"{label}-records", settings.subject_salt)
                _lookups(url, settings, n, 20)  # warm the connection pool and the plan cache
                ms = _lookups(url, settings, n, k, seed=1)
            result[label] = {"records": n, "import": stages, "lookup_ms": {
                "median": round(statistics.median(ms), 3), "p95": round(float(np.percentile(ms, 95)), 3),
                "max": round(max(ms), 3)}}
    result["lookup_ratio"] = round(result["large"]["lookup_ms"]["median"] / result["small"]["lookup_ms"]["median"], 3)
    return result


def markdown(r: dict) -> str:
    big, small = r["large"], r["small"]
    imp = big["import"]
    return "\n".join([
        "## Lineage import",
        "",
        f"{big['records']:,} training records ({r['per_owner']} per owner) from one Parquet manifest into PostgreSQL "
        "on this machine (2 cores), one transaction:",
        "",
        "| stage | seconds |",
        "|---|---:|",
        *(f"| {name} | {imp[key]:.2f} |" for name, key in (
            ("read (datasets)", "read_s"), ("check and hash every row", "normalise_s"),
            ("save the records folder", "save_s"), ("insert (COPY)", "insert_s"), ("**total**", "total_s"))),
        "",
        f"Target: at most 60 s. {'Met' if imp['total_s'] <= 60 else 'Missed'}.",
        "",
        "Subject lookup as intake resolves it (median / p95 ms over random owners):",
        "",
        "| records | median | p95 |",
        "|---:|---:|---:|",
        f"| {small['records']:,} | {small['lookup_ms']['median']:.2f} | {small['lookup_ms']['p95']:.2f} |",
        f"| {big['records']:,} | {big['lookup_ms']['median']:.2f} | {big['lookup_ms']['p95']:.2f} |",
        "",
        f"Ratio of medians: {r['lookup_ratio']:.2f} (target: at most 2).",
    ]) + "\n"


def regenerate(results: Path = RESULTS) -> str:
    """The page (lineage_import.md) as rebuilt from the stored lineage_import.json under `results`: what
    --markdown-only writes."""
    return markdown(json.loads((results / "lineage_import.json").read_text()))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=10_000)
    ap.add_argument("--lookups", type=int, default=200)
    ap.add_argument("--markdown-only", action="store_true", help="rewrite lineage_import.md from its stored JSON")
    args = ap.parse_args()
    if args.markdown_only:
        (RESULTS / "lineage_import.md").write_text(regenerate())
        return 0
    r = run(args.records, args.small, args.lookups)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lineage_import.json").write_text(json.dumps(r, indent=2))
    (RESULTS / "lineage_import.md").write_text(markdown(r))
    print(markdown(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
