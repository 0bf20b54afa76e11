"""A team's own LM (the support-ticket stand-in, examples/byo/support_lm.py) forgetting one customer at a
time under the holdout policy: doing nothing (the original, unchanged), the recipe's retrain without the
customer, and npo_klr; every criterion of the records verifier, and wall time.

    python -m benchmarks.byo_lm                       # customers cust-0003, cust-0011, cust-0024, cust-0037
    python -m benchmarks.byo_lm --customers cust-0003 --methods retrain
    python -m benchmarks.byo_lm --markdown-only          # rebuild byo_lm.md from byo_lm.json

The stand-in is built under `--work` (about 1-2 min on one shared CPU core) unless already there.
Results: benchmarks/results/byo_lm.json (the Markdown table is printed).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.pages import page
from examples.byo.support_lm import build_support_lm, paths_in, stage, subject_ids
from unlearn.contracts import Scope
from unlearn.families import get_family
from unlearn.methods import UnlearnTask, get_method

RESULTS = Path(__file__).parent / "results"
NPO_PARAMS = {"min_steps": 10, "max_epochs": 10}  # the test's: a handful of tickets, a few steps each check


def run(customers: list[str], methods: list[str], work: Path, seed: int) -> list[dict[str, Any]]:
    built = paths_in(work / "stand-in")
    if not (built["model"] / "config.json").exists():
        build_support_lm(work / "stand-in", seed=seed)
    runs = work / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    team = stage(built, runs / "v1", runs / "records")
    fam, rows = get_family("lm"), []
    for cust in customers:
        forget = subject_ids(team["rows"], cust)
        retain = [s for s in team["records"].ids_in("train") if s not in forget]
        for method in methods:
            out = runs / f"{cust}-{method}"
            t0 = time.perf_counter()
            if method == "nothing":
                out, facts = team["model"], {}
            else:
                params = NPO_PARAMS if method.startswith(("npo", "ga")) else {}
                facts = get_method(method).run(UnlearnTask("lm", team["model"], out, forget, retain, params=params))
            seconds = time.perf_counter() - t0
            verdict = fam.verify(out, None, forget, retain, Scope(type="subject"))
            rows.append({"customer": cust, "method": method, "passed": verdict.passed, "seconds": round(seconds, 1),
                         "criteria": {c.name: {"value": c.value, "threshold": c.threshold, "passed": c.passed,
                                               "applicable": c.applicable, "ci": c.ci} for c in verdict.criteria},
                         "stop": facts.get("stop"), "steps": facts.get("steps_run")})
            print(table_row(rows[-1]), flush=True)
    return rows


# What the benchmark runs, in the page's words (the counts are the stand-in's, examples/byo/support_lm.py).
SETUP = ('The stand-in is `examples/byo/support_lm.py`: a tiny GPT-2 base (2 layers, 128 wide, 512-token byte-'
         'level BPE) fine-tuned 25 epochs on 200 tickets of 40 customers; 50 tickets of 10 further customers '
         "are the holdout, split by customer into a verification half (25 tickets, the verifier's) and a "
         "calibration half (25, the methods' stopping probe). Each row forgets one customer's 5 tickets from "
         'the registered model and is verified under the holdout policy (no reference): membership AUC '
         '(Min-40% Prob, forget vs the verification half) within 0.1 of 0.5; VerbMem on forget ≤ the '
         "original's upper 95% bound for 5 never-seen tickets + 0.05; per-token likelihood of 195 retained "
         "tickets ≥ 0.8 × the original's. KnowMem (C2, C4) is not applicable: the tickets carry no "
         'question–answer pairs. npo_klr runs with `min_steps` 10, `max_epochs` 10 (its other parameters at '
         "their defaults). Seconds: the method's wall time (retrain: the recipe's 25 epochs from the base on "
         '195 tickets).')
HEAD = ("| customer | method | verdict | membership AUC 95% interval | VerbMem forget ≤ bound | "
        "likelihood ≥ bound | KnowMem | seconds |\n|---|---|---|---|---|---|---|---|")


def table_row(r: dict[str, Any]) -> str:
    c = r["criteria"]
    auc = c["holdout_mia_auc"]["ci"]
    return (f"| {r['customer']} | {r['method']} | {'pass' if r['passed'] else 'fail'} | "
            f"[{auc[0]:.2f}, {auc[1]:.2f}] | {c['holdout_verbmem']['value']:.3f} ≤ {c['holdout_verbmem']['threshold']:.3f} | "
            f"{c['holdout_likelihood']['value']:.3f} ≥ {c['holdout_likelihood']['threshold']:.3f} | "
            f"{'n/a' if not c['knowmem_forget']['applicable'] else c['knowmem_forget']['value']} | {r['seconds']} |")


def markdown(report: dict[str, Any]) -> str:
    """The page's setup, table and pass counts from byo_lm.json."""
    runs = report["runs"]
    passes = ", ".join(f"{m} {sum(r['passed'] for r in runs if r['method'] == m)}/"
                       f"{sum(r['method'] == m for r in runs)}" for m in dict.fromkeys(r["method"] for r in runs))
    customers = len({r["customer"] for r in runs})
    return (f"# Bring your own LM: forgetting one customer of the support-ticket stand-in (holdout policy)\n\n"
            f"`python -m benchmarks.byo_lm` (seed {report['seed']}), {report['date']}, on {report['cpu_count']} CPU "
            f"cores shared with other sessions, {report['torch_threads']} torch thread. {SETUP}\n\n{HEAD}\n"
            + "\n".join(table_row(r) for r in runs)
            + f"\n\nPass rates over these {customers} customers: {passes}.\n")


def regenerate(results: Path = RESULTS) -> str:
    """The page (byo_lm.md) as rebuilt from the stored byo_lm.json under `results`: what --markdown-only writes."""
    return page("byo_lm", markdown(json.loads((results / "byo_lm.json").read_text())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", nargs="+", default=["cust-0003", "cust-0011", "cust-0024", "cust-0037"])
    ap.add_argument("--methods", nargs="+", default=["nothing", "retrain", "npo_klr"])
    ap.add_argument("--work", type=Path, default=Path(".unlearn/bench-byo-lm"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--markdown-only", action="store_true", help="rewrite byo_lm.md from the stored byo_lm.json")
    args = ap.parse_args()
    if args.markdown_only:
        (RESULTS / "byo_lm.md").write_text(regenerate())
        return
    torch.set_num_threads(1)
    print(HEAD)
    rows = run(args.customers, args.methods, args.work, args.seed)
    RESULTS.mkdir(exist_ok=True)
    report = {"machine": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": 1, "seed": args.seed,
              "date": datetime.date.today().isoformat(), "runs": rows}
    (RESULTS / "byo_lm.json").write_text(json.dumps(report, indent=2, default=float))
    (RESULTS / "byo_lm.md").write_text(page("byo_lm", markdown(report)))


if __name__ == "__main__":
    main()
