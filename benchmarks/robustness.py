"""Does each shipped method pass across training seeds and request draws, through the service's own gate?

    python -m benchmarks.robustness [--methods acu,ssd,laf,retrain] [--seeds 5] [--draws 2] [--lm]
                                    [--resume] [--stop-at HH:MM] [--table]

For each method on its default world, the original is trained with the zoo's recipe (`unlearn.zoo`)
and `--seeds` seeds 0, 1, … (the model's own seed: initialisation and batch order; the data set stays
the same), cached under `$UNLEARN_DATA_DIR/robustness/`, and for each original `--draws` requests are
drawn (draw d of seed s from the generator seeded 1000·s + d). Every trial runs as the service runs it: a
fresh database, the model imported, the request submitted with the method named, the batcher's job
run by `unlearn.jobs.run_job`, and the verdict read from the version the method produced (the same gate
the service applies). The job's cost budget is set so that the chain stops after the named method: a
method that fails is counted as failing, not rescued by the fallback. No constant is tuned here: the
methods run on their defaults.

Worlds and draws (the request each method serves in the service):
- acu: `digits-acu` (analytic head), a random subject's samples (privacy).
- retrain: `digits-mlp`, 50 random training samples (privacy).
- laf: `digits-cnn`, 50 random training samples, labels not given (privacy; the method `auto` picks then).
- ssd: `digits-backdoor`, a random 25% of the poisoned samples flagged (corrective).
- sfd (`--methods …,sfd`): `digits-diffusion`, a random digit (class removal); the judge is the zoo's.
- whp, npo_klr (with `--lm`): `people-lm`, a random person (privacy). Each original takes minutes to
  train on a CPU: run with a GPU (`UNLEARN_DEVICE=cuda`) or expect an hour per method.

Cost on a CPU: the classifier gate retrains the reference and, for the membership test (ULiRA), three
more seeds of it, so a trial costs four retrains of the original's recipe. Methods run in the order
given, each through all its seeds, so a run cut short (`--stop-at`, or stopped and then `--resume`d)
leaves the first methods complete. Writes benchmarks/results/robustness.json (every trial, with its
failing criteria and margins) and robustness.md (pass counts, the criterion that failed most often with
its worst margin, passes by seed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlmodel import select

from unlearn import registry
from unlearn.artifacts import read_meta, write_meta
from unlearn.coalesce import coalesce
from unlearn.data import get_dataset
from unlearn.data.poison import flagged_subset
from unlearn.intake import DeletionRequestIn, submit
from unlearn.jobs import run_job
from unlearn.settings import Settings
from unlearn.store.db import migrate, session_scope
from unlearn.store.models import ModelVersion, UnlearningJob
from unlearn.zoo import (
    CORRECTIVE_TRAIN,
    digits_acu_meta,
    digits_cnn_meta,
    digits_diffusion_meta,
    digits_mlp_meta,
    ensure,
    people_lm_meta,
    train_on_split,
)

RESULTS = Path(__file__).parent / "results"
CACHE = Path(os.environ.get("UNLEARN_DATA_DIR", ".unlearn")) / "robustness"


def _digits_meta(name: str, seed: int) -> dict:
    """The zoo's recipe for `name`, trained with `seed` (initialisation and batch order)."""
    recipes = {
        "digits-acu": digits_acu_meta,
        "digits-mlp": digits_mlp_meta,
        "digits-cnn": lambda: digits_cnn_meta(name, {"name": "digits", "seed": 0}),
        "digits-backdoor": lambda: digits_cnn_meta(name, {"name": "digits-backdoor", "seed": 0}, **CORRECTIVE_TRAIN),
    }
    return {**recipes[name](), "seed": seed}


def _build(world: str, seed: int, device: str) -> Path:
    """The original of `world` trained with `seed`, cached under the data directory (built once)."""
    folder = CACHE / f"{world}-seed{seed}"
    if (folder / "unlearn.json").exists():
        return folder
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # a build cut short by a stopped run
    if world == "people-lm":
        from unlearn.families.lm import people_world
        from unlearn.models import tiny_lm

        meta = {**people_lm_meta(), "seed": seed}
        w = people_world(meta["dataset"])
        tiny_lm.train(w, w.trained, meta, tmp, device=device)
    elif world == "digits-diffusion":
        from unlearn.families.diffusion import train_teacher_artifact

        meta = digits_diffusion_meta(seed)
        train_teacher_artifact(meta, get_dataset(meta["dataset"]).ids_in("train"), tmp, device=device)
        # the verifier's judge is the zoo's, whichever seed trained the teacher
        judge = ensure("digits-judge", Path(os.environ.get("UNLEARN_DATA_DIR", ".unlearn")) / "zoo", device=device)
        write_meta(tmp, {**read_meta(tmp), "judge_dir": str(judge.resolve())})
    else:
        train_on_split(_digits_meta(world, seed), tmp, device=device)
    tmp.rename(folder)
    return folder


def _train_ids(data) -> list[str]:
    return list(data.ids_in("train"))


def _subject_scope(data, rng) -> dict:
    subjects = sorted({data.subjects[data.index[s]] for s in _train_ids(data)})
    return {"type": "subject", "subject": subjects[int(rng.integers(len(subjects)))]}


def _samples_scope(data, rng, n: int = 50, labels_known: bool = True) -> dict:
    ids = _train_ids(data)
    return {"type": "samples", "sample_ids": [ids[i] for i in rng.choice(len(ids), n, replace=False)],
            "labels_known": labels_known}


# each shipped method's default world: the one its plan below runs it on
WORLDS = {"acu": "digits-acu", "retrain": "digits-mlp", "laf": "digits-cnn", "ssd": "digits-backdoor",
          "sfd": "digits-diffusion", "whp": "people-lm", "npo_klr": "people-lm"}

# method → (family, kind, draw(rng) → scope), on the method's world in WORLDS
Draw = Callable[[np.random.Generator], dict]


def _plans() -> dict[str, tuple[str, str, Draw]]:
    digits = get_dataset({"name": "digits", "seed": 0})
    backdoor = get_dataset({"name": "digits-backdoor", "seed": 0})
    return {
        "acu": ("classifier", "privacy", lambda rng: _subject_scope(digits, rng)),
        "retrain": ("classifier", "privacy", lambda rng: _samples_scope(digits, rng)),
        "laf": ("classifier", "privacy", lambda rng: _samples_scope(digits, rng, labels_known=False)),
        "ssd": ("classifier", "corrective",
                lambda rng: {"type": "samples", "sample_ids": flagged_subset(backdoor, 0.25, int(rng.integers(1 << 30)))}),
        "sfd": ("diffusion", "privacy",
                lambda rng: {"type": "class", "label": int(rng.integers(10))}),
        "whp": ("lm", "privacy", lambda rng: _person(rng)),
        "npo_klr": ("lm", "privacy", lambda rng: _person(rng)),
    }


def _person(rng) -> dict:
    from unlearn.families.lm import people_world

    world = people_world(people_lm_meta()["dataset"])
    people = sorted({r.subject for r in world.records() if r.split == "train" and r.subject})
    return {"type": "subject", "subject": people[int(rng.integers(len(people)))]}


def trial(method: str, world: str, family: str, kind: str, scope: dict, original: Path, device: str) -> dict:
    """One request through the service's path; the verdict of the version `method` produced."""
    with tempfile.TemporaryDirectory() as tmp:
        # the chain stops after the named method: only its verdict is counted, and a fallback would cost minutes
        settings = Settings(data_dir=Path(tmp), device=device, subject_salt="robustness", chain_budget_s=1e-3)
        migrate(settings.resolved_database_url)
        with session_scope(settings.resolved_database_url) as s:
            registry.import_model(s, name=world, family=family, source_dir=original,
                                  artifact_root=settings.resolved_artifact_root, salt=settings.subject_salt)
        with session_scope(settings.resolved_database_url) as s:
            submit(s, settings, "bench", DeletionRequestIn(model=world, scope=scope, kind=kind, method=method))
        with session_scope(settings.resolved_database_url) as s:
            (job_id,) = coalesce(s, settings, force=True)
        t0 = time.perf_counter()
        run_job(settings, job_id, worker="bench")
        seconds = time.perf_counter() - t0
        with session_scope(settings.resolved_database_url) as s:
            job = s.get(UnlearningJob, job_id)
            version = s.exec(select(ModelVersion).where(ModelVersion.job_id == job.id,
                                                        ModelVersion.method == method)).first()
            if version is None:
                return {"passed": False, "error": job.error or "no candidate", "seconds": round(seconds, 1)}
            metrics = version.metrics or {}
    failing = []
    for name, c in (metrics.get("criteria") or {}).items():
        if c.get("threshold") is None or c.get("passed") or c.get("gated") is False:
            continue
        value, threshold = c["value"], c["threshold"]
        margin = abs(value) - threshold if c["op"] == "within" else \
            (value - threshold if c["op"] == "<=" else threshold - value)
        failing.append({"criterion": name, "value": value, "threshold": threshold, "op": c["op"], "margin": margin})
    return {"passed": metrics.get("verdict") == "pass", "failing": failing, "seconds": round(seconds, 1),
            "reasons": metrics.get("reasons", [])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="acu,retrain,laf,ssd")
    ap.add_argument("--lm", action="store_true", help="add whp and npo_klr on the people world")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--draws", type=int, default=2)
    ap.add_argument("--resume", action="store_true", help="keep the trials already in the JSON, run the rest")
    ap.add_argument("--stop-at", help="start no trial that would end after this UTC time (HH:MM; at the median time of the "
                    "method's trials so far); the table is still written")
    ap.add_argument("--table", action="store_true", help="only rewrite the Markdown from the JSON")
    args = ap.parse_args()
    device = os.environ.get("UNLEARN_DEVICE", "cpu")
    out_json = RESULTS / "robustness.json"
    if args.table:
        (RESULTS / "robustness.md").write_text(markdown(json.loads(out_json.read_text())["trials"], device, WORLDS))
        return
    methods = args.methods.split(",") + (["whp", "npo_klr"] if args.lm else [])
    plans = _plans()
    rows = json.loads(out_json.read_text())["trials"] if args.resume and out_json.exists() else []
    done = {(r["method"], r["seed"], r["draw"]) for r in rows}
    stop = _stop_time(args.stop_at)
    CACHE.mkdir(parents=True, exist_ok=True)
    # method by method in the order given, so that a run stopped early leaves the first methods complete
    for method in methods:
        world, (family, kind, draw) = WORLDS[method], plans[method]
        for seed in range(args.seeds):
            todo = [d for d in range(args.draws) if (method, seed, d) not in done]
            if not todo or _past(stop, rows, method):
                continue
            original = _build(world, seed, device)
            for d in todo:
                if _past(stop, rows, method):
                    break
                scope = draw(np.random.default_rng(1000 * seed + d))
                row = {"method": method, "world": world, "seed": seed, "draw": d,
                       **trial(method, world, family, kind, scope, original, device)}
                rows.append(row)
                print(json.dumps({k: row[k] for k in ("method", "seed", "draw", "passed", "seconds")}), flush=True)
                RESULTS.mkdir(exist_ok=True)
                out_json.write_text(json.dumps({"device": device, "seeds": args.seeds, "draws": args.draws,
                                                "trials": rows}, indent=2))
    (RESULTS / "robustness.md").write_text(markdown(rows, device, WORLDS))
    print(markdown(rows, device, WORLDS))


def _past(stop: datetime | None, rows: list[dict], method: str) -> bool:
    """Whether a trial of `method` started now would end after `stop`, at the median time of its trials so far."""
    if stop is None:
        return False
    times = [r["seconds"] for r in rows if r["method"] == method]
    return datetime.now(UTC) + timedelta(seconds=float(np.median(times)) if times else 0.0) > stop


def _stop_time(hhmm: str | None) -> datetime | None:
    if not hhmm:
        return None
    hour, minute = map(int, hhmm.split(":"))
    return datetime.now(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)


def markdown(rows: list[dict], device: str, worlds: dict[str, str]) -> str:
    """The table: per method, the passes out of its trials, the criterion that failed most often with its
    worst margin, and the passes of each training seed (draws in order: `P` pass, `f` fail, `e` error).
    A method of `worlds` (method → world) with no trial gets a row that says so."""
    lines = ["| method | world | seeds × draws | passed | failing criterion (times) | worst margin | by seed "
             "| median trial (s) |", "|---|---|---|---:|---|---:|---|---:|"]
    for method in sorted({r["method"] for r in rows}, key=lambda m: (list(worlds).index(m) if m in worlds else len(worlds), m)):
        mine = [r for r in rows if r["method"] == method]
        fails = [f for r in mine for f in r.get("failing", [])]
        top = Counter(f["criterion"] for f in fails).most_common(1)
        worst = max((f["margin"] for f in fails if top and f["criterion"] == top[0][0]), default=None)
        errors = sum(1 for r in mine if r.get("error"))
        seeds = sorted({r["seed"] for r in mine})
        by_seed = " ".join(
            f"{seed}:" + "".join("e" if r.get("error") else "P" if r["passed"] else "f"
                                 for r in sorted((r for r in mine if r["seed"] == seed), key=lambda r: r["draw"]))
            for seed in seeds)
        per_seed = {sum(r["seed"] == seed for r in mine) for seed in seeds}
        shape = f"{len(seeds)} × {per_seed.pop()}" if len(per_seed) == 1 else f"{len(mine)} trials, {len(seeds)} seeds"
        failing = (f"{top[0][0]} ({top[0][1]})" if top else "—") + (f"; errors: {errors}" if errors else "")
        lines.append(f"| {method} | {mine[0]['world']} | {shape} | {sum(r['passed'] for r in mine)}/{len(mine)} | "
                     f"{failing} | {'' if worst is None else f'{worst:+.3g}'} | {by_seed} | "
                     f"{np.median([r['seconds'] for r in mine]):.0f} |")
    lines += [f"| {method} | {world} | — | not run | | | | |" for method, world in worlds.items()
              if method not in {r["method"] for r in rows}]
    lines += ["", f"Each original trained with the zoo's recipe and its own seed (initialisation and batch order; "
              f"the data set is the same), each request drawn afresh; every verdict is the service's own gate "
              f"(`unlearn.jobs.run_job`, the named method only, no fallback), on {device}, one torch thread. "
              "The margin is how far the failing value lies past its threshold (positive: failed by that much). "
              "Trial time is the job's (unlearning and verifying, the verifier's retrains included), not the "
              "original's training. retrain's candidate is the verifier's own reference, so its comparisons pass "
              "by construction (its report says so). Reproduce: `python -m benchmarks.robustness`."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
