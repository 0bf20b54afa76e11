"""The classifier gate's operating characteristic: power against doing nothing, false rejection of exact
retrains with other seeds, per scope.

For each model, scope (1, 5 and 50 random training samples; a subject; a class) and draw (a forget set):
the service's reference (the exact retrain, the original's seed) and the U-LiRA retrains with other seeds
are built as the service builds them; then two kinds of candidate are verified as the service verifies
them (`ClassifierFamily.verify`, then `unlearn.verification.exactness_rule`):
- "do nothing": the unchanged original, made by no method (so not exact). Power = the share refused.
- "exact retrain, another seed": retrains on the same retained set with seeds no reference uses, made by
  the `retrain` method (exact). False rejection = the share refused.
Intervals are Clopper-Pearson 95%. One torch thread; everything else on the machine shares the cores.

    python -m benchmarks.gate_power [--models digits-mlp] [--draws 4] [--retrains 1] [--markdown-only]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from unlearn.families import Scope, get_family
from unlearn.families.classifier import dataset_of
from unlearn.settings import Settings
from unlearn.verification import exactness_rule, gates_for
from unlearn.verify.ulira import GATE_DEFAULTS
from unlearn.zoo import ensure

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SCOPES = ("samples-50", "class", "subject", "samples-5", "samples-1")  # the most telling first
# the other-seed candidates' `seeded_retrain` indices: far from the U-LiRA references' 1, 2, 3
CANDIDATE_SEEDS_FROM = 101


def forget_set(data, scope: str, rng: np.random.Generator) -> tuple[list[str], Scope]:
    """One draw of `scope`'s forget set among the training samples."""
    train = data.ids_in("train")
    if scope.startswith("samples-"):
        n = int(scope.split("-")[1])
        return sorted(rng.choice(train, n, replace=False).tolist()), Scope(type="samples")
    if scope == "subject":
        subjects = sorted({data.subjects[data.index[s]] for s in train})
        subject = subjects[rng.integers(len(subjects))]
        return [s for s in train if data.subjects[data.index[s]] == subject], Scope(type="subject")
    label = int(rng.integers(data.num_classes))
    return [s for s in train if data.y[data.index[s]] == label], Scope(type="class", label=label)


def clopper_pearson(k: int, n: int) -> list[float]:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return [float(ci.low), float(ci.high)]


def judge(candidate: Path, reference: Path, forget: list[str], keep: list[str], scope: Scope,
          method: str | None) -> dict:
    fam = get_family("classifier")
    verdict = fam.verify(candidate, reference, forget, keep, scope, thresholds=gates_for("classifier", method, scope))
    exactness_rule(verdict, method)
    rows = {c.name: c for c in verdict.criteria}
    return {"refused": not verdict.passed, "by_ulira": bool(rows["ulira"].threshold is not None and not rows["ulira"].passed),
            "indistinguishable": "indistinguishable" in verdict.info, "separation": verdict.info["ulira_separation"],
            "remembered_share": verdict.info["ulira_remembered_share"], "reasons": verdict.reasons}


def run_scope(name: str, scope_name: str, draws: int, retrains: int, work: Path) -> dict:
    model = ensure(name, Settings().zoo_dir)  # the demo's and the service's cached zoo
    data = dataset_of(model)
    fam = get_family("classifier")
    rng = np.random.default_rng(SCOPES.index(scope_name))  # the same forget sets for every model
    nothing, other = [], []
    for d in range(draws):
        forget, scope = forget_set(data, scope_name, rng)
        gone = set(forget)
        keep = [s for s in data.ids_in("train") if s not in gone]
        ref = work / f"{scope_name}-{d}" / "ref"
        fam.retrain(model, keep, ref)
        nothing.append(judge(model, ref, forget, keep, scope, None))
        for r in range(retrains):
            cand = fam.seeded_retrain(ref, keep, CANDIDATE_SEEDS_FROM + r)
            other.append(judge(cand, ref, forget, keep, scope, "retrain"))
        print(f"{name} {scope_name} draw {d}: n={len(forget)} separation {nothing[-1]['separation']:.2f} "
              f"do-nothing refused {nothing[-1]['refused']}, retrains refused "
              f"{[o['refused'] for o in other[-retrains:]]}", flush=True)
        shutil.rmtree(ref.parent, ignore_errors=True)
    k_n, k_o = sum(x["refused"] for x in nothing), sum(x["refused"] for x in other)
    return {"model": name, "scope": scope_name, "draws": draws,
            "indistinguishable": sum(x["indistinguishable"] for x in nothing),
            "separation_median": float(np.median([x["separation"] for x in nothing])),
            "do_nothing": {"refused": k_n, "n": len(nothing), "rate": k_n / len(nothing),
                           "ci": clopper_pearson(k_n, len(nothing)),
                           "refused_by_ulira": sum(x["by_ulira"] for x in nothing)},
            "retrain_other_seed": {"refused": k_o, "n": len(other), "rate": k_o / len(other),
                                   "ci": clopper_pearson(k_o, len(other)),
                                   "reasons": sorted({r for x in other for r in x["reasons"]})}}


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = [
        "## Gate power (classifier)",
        "",
        f"_Generated by `python -m benchmarks.gate_power` from `gate_power.json`: {s['draws']} forget sets per "
        f"scope, {s['retrains']} other-seed retrains each; U-LiRA with {s['ulira_references']} retrains, "
        f"separation gate {s['ulira_min_separation']}; {s['torch_threads']} torch thread, {s['seconds']:.0f} s._",
        "",
        "| model | scope | indistinguishable | power: do nothing refused | of which by U-LiRA "
        "| false rejection: other-seed retrains refused | why they were refused |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        dn, ro = r["do_nothing"], r["retrain_other_seed"]
        lines.append(f"| {r['model']} | {r['scope']} | {r['indistinguishable']}/{r['draws']} "
                     f"(median separation {r['separation_median']:.2f}) "
                     f"| {dn['refused']}/{dn['n']} ({dn['ci'][0]:.2f}–{dn['ci'][1]:.2f}) | {dn['refused_by_ulira']} "
                     f"| {ro['refused']}/{ro['n']} ({ro['ci'][0]:.2f}–{ro['ci'][1]:.2f}) "
                     f"| {'; '.join(ro['reasons']) or '–'} |")
    lines += ["", "Power counts a refusal for either reason: the likelihood ratio (distinguishable requests) or, "
              "where the original was indistinguishable from the retrains, the rule that only an exact method "
              "certifies such a request. Intervals: Clopper-Pearson 95%. The last column lists the failing "
              "criteria of the refused exact retrains (U-LiRA's row is `ulira`; the others are the gates kept "
              "beside it)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="digits-mlp")
    ap.add_argument("--scopes", default=",".join(SCOPES))
    ap.add_argument("--draws", type=int, default=4)
    ap.add_argument("--retrains", type=int, default=1)
    ap.add_argument("--markdown-only", action="store_true", help="rewrite gate_power.md from the stored JSON")
    args = ap.parse_args()
    if args.markdown_only:
        (RESULTS / "gate_power.md").write_text(markdown(json.loads((RESULTS / "gate_power.json").read_text())))
        return
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="gate-power-") as tmp:
        for name in args.models.split(","):
            for scope in args.scopes.split(","):
                rows.append(run_scope(name, scope, args.draws, args.retrains, Path(tmp)))
                write(rows, args, time.perf_counter() - t0)  # after each scope: a long run keeps what it measured
    print(markdown(json.loads((RESULTS / "gate_power.json").read_text())))


def write(rows: list[dict], args: argparse.Namespace, seconds: float) -> None:
    result = {"settings": {"draws": args.draws, "retrains": args.retrains, "torch_threads": 1,
                           "ulira_references": int(GATE_DEFAULTS["ulira_references"]),
                           "ulira_min_separation": GATE_DEFAULTS["ulira_min_separation"],
                           "seconds": seconds}, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gate_power.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "gate_power.md").write_text(markdown(result))


if __name__ == "__main__":
    main()
