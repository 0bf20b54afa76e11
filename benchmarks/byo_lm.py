"""A team's own LM (the support-ticket stand-in, examples/byo/support_lm.py) forgetting one customer at a
time under the holdout policy: doing nothing (the original, unchanged), the recipe's retrain without the
customer, and npo_klr; every criterion of the records verifier, and wall time.

    python -m benchmarks.byo_lm                       # customers cust-0003, cust-0011, cust-0024, cust-0037
    python -m benchmarks.byo_lm --customers cust-0003 --methods retrain

The stand-in is built under `--work` (about 1-2 min on one shared CPU core) unless already there.
Results: benchmarks/results/byo_lm.json (the Markdown table is printed).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import torch

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


def table_row(r: dict[str, Any]) -> str:
    c = r["criteria"]
    auc = c["holdout_mia_auc"]["ci"]
    return (f"| {r['customer']} | {r['method']} | {'pass' if r['passed'] else 'fail'} | "
            f"[{auc[0]:.2f}, {auc[1]:.2f}] | {c['holdout_verbmem']['value']:.3f} ≤ {c['holdout_verbmem']['threshold']:.3f} | "
            f"{c['holdout_likelihood']['value']:.3f} ≥ {c['holdout_likelihood']['threshold']:.3f} | "
            f"{'n/a' if not c['knowmem_forget']['applicable'] else c['knowmem_forget']['value']} | {r['seconds']} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", nargs="+", default=["cust-0003", "cust-0011", "cust-0024", "cust-0037"])
    ap.add_argument("--methods", nargs="+", default=["nothing", "retrain", "npo_klr"])
    ap.add_argument("--work", type=Path, default=Path(".unlearn/bench-byo-lm"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("| customer | method | verdict | membership AUC 95% interval | VerbMem forget ≤ bound | "
          "likelihood ≥ bound | KnowMem | seconds |\n|---|---|---|---|---|---|---|---|")
    rows = run(args.customers, args.methods, args.work, args.seed)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "byo_lm.json").write_text(json.dumps({"machine": platform.platform(), "torch_threads": 1,
                                                      "seed": args.seed, "runs": rows}, indent=2, default=float))


if __name__ == "__main__":
    main()
