"""The MUSE table for every language-model method on the default people world.

For each method: C1–C4 with bootstrap 95% intervals and the gate's verdict, wall time against the
time to retrain the reference from scratch, and the C5 (forget-set size) and C6 (sequential
requests) curves of utility and forgetting. Writes benchmarks/results/muse.json, muse.md and
muse_c5.png / muse_c6.png.

    python -m benchmarks.muse                       # all six methods, curves for --curves
    python -m benchmarks.muse --methods npo_klr --curves npo_klr
    python -m benchmarks.muse --methods whp,whp:seed=1,whp:seed=2 --curves whp --jobs 2
    python -m benchmarks.muse --regate    # judge the stored scores again with the gate's current bars
    python -m benchmarks.muse --markdown-only   # rebuild muse.md from muse.json

With --jobs above 1, the retrain is run a second time as one of the jobs, so that its wall time and the
methods' are measured under the same load and thread count; the reference used for scoring is the first.

Every model's per-item scores are stored in muse.json, so a change of the gate's bars re-judges them
without retraining anything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from benchmarks.pages import page
from unlearn.families import get_family
from unlearn.families.lm import HFLanguageModel, muse_data, reference_scores, world_of
from unlearn.methods import UnlearnTask, get_method
from unlearn.models.tiny_lm import DEFAULT_TRAIN
from unlearn.verify import muse
from unlearn.zoo import ensure

METHODS = ["ga", "ga_gdr", "ga_klr", "npo", "npo_gdr", "npo_klr", "whp"]
RESULTS = Path(__file__).resolve().parent / "results"
CRITERIA = ["verbmem", "knowmem_forget", "privleak", "privleak_bio", "privleak_qa", "knowmem_retain"]
# Column headings of the criteria; a report judged before C3 was read per document kind has no privleak_bio/_qa.
HEADS = {"verbmem": "C1 VerbMem ↓", "knowmem_forget": "C2 KnowMem forget ↓", "privleak": "C3 PrivLeak",
         "privleak_bio": "C3 biographies", "privleak_qa": "C3 question–answer", "knowmem_retain": "C4 KnowMem retain ↑"}


def run_method(name: str, base: Path, forget: list[str], retain: list[str], out: Path,
               params: dict[str, Any] | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    facts = get_method(name).run(UnlearnTask("lm", base, out, list(forget), list(retain), params=params or {}))
    return {**facts, "wall_s": time.perf_counter() - t0}


def write_results(out: Path, name: str, report: dict[str, Any], text: str) -> None:
    """`name`.json (everything measured) and `name`.md (the table the README shows)."""
    (out / f"{name}.json").write_text(json.dumps(report, indent=2, default=float))
    (out / f"{name}.md").write_text(page(name, text))
    print(text)


def curve_scorer(world):
    """Utility on the core people (in no fold) and forgetting on the folds requested so far."""
    def score(model_dir: Path, forget: list[str]) -> dict[str, float]:
        data = muse_data(world, forget, world.core)
        s = muse.score_model(HFLanguageModel.load(model_dir), data, ("verbmem", "knowmem_forget", "knowmem_retain"))
        return {"knowmem_retain": float(s.knowmem_retain.mean()), "verbmem": float(s.verbmem.mean()),
                "knowmem_forget": float(s.knowmem_forget.mean())}
    return score


def parse_method(spec: str) -> tuple[str, dict[str, Any]]:
    """"whp", "whp:seed=1" or "whp:ga_weight=0.05+seed=1": a registered method and the parameters it runs
    with ("+" between parameters, since "," separates the methods of --methods)."""
    name, _, args = spec.partition(":")
    return name, {k: json.loads(v) for k, v in (a.split("=", 1) for a in args.split("+") if a)}


def run_job(job: tuple[str, str, int], target: Path, reference: Path, work: Path, threads: int) -> Any:
    """One method on the default fold and its verdict ("method"), or one point of its C5 curve (the k-th
    nested forget set) or its whole C6 curve (sequential, each request starts from the last); own process."""
    torch.set_num_threads(threads)
    kind, spec, k = job
    name, params = parse_method(spec)
    world = world_of(target)
    out = work / f"{spec}-{kind}-{k}".replace(":", "_").replace("=", "")
    if kind == "retrain":  # the retrain's time under the same load and threads as the methods beside it
        t0 = time.perf_counter()
        get_family("lm").retrain(target, world.retain, out)
        return time.perf_counter() - t0
    if kind == "method":
        facts = run_method(name, target, world.forget, world.retain, out, params)
        scores = score(out, world)
        data = muse_data(world, world.forget, world.retain)
        v = muse.gate(scores, reference_scores(reference, data, world.forget, world.retain))
        print(spec, "pass" if v.passed else f"fail {v.reasons}", f"{facts['wall_s']:.1f}s", flush=True)
        return {"method": spec, "passed": v.passed, "criteria": v.to_dict()["criteria"], "wall_s": facts["wall_s"],
                "epochs_run": facts["epochs_run"], "epoch_chosen": facts["epoch_chosen"], "stop": facts["stop"],
                "params": facts["params"], "curve": facts["curve"], "scores": scores.to_dict()}

    def unlearn(base: Path, forget: list[str], o: Path) -> dict[str, Any]:
        # a request keeps the people no request has forgotten yet (C6: this fold and the folds before
        # it); utility is read on the core people
        gone = set(forget)
        if kind == "c6":
            gone |= {s for fold in world.folds[:world.folds.index(sorted(forget))] for s in fold}
        return run_method(name, base, forget, [s for s in world.trained if s not in gone], o, params)

    if kind == "c5":
        rows = muse.scalability(unlearn, curve_scorer(world), target, [world.nested[k]], out)
    else:
        rows = muse.sustainability(unlearn, curve_scorer(world), target, world.folds, out)
    print(spec, kind, k, "done", flush=True)
    return rows


def score(model_dir: Path, world) -> muse.MuseScores:
    """The per-item scores the verifier computes for `model_dir` on the default fold (`LMFamily.verify`)."""
    return muse.score_model(HFLanguageModel.load(model_dir), muse_data(world, world.forget, world.retain))


def regate(report: dict[str, Any]) -> dict[str, Any]:
    """The report's stored scores judged again by `muse.gate` with its current default bars."""
    ref = muse.MuseScores.from_dict(report["reference_scores"])
    for row in [report["target_row"], *report["methods"]]:
        v = muse.gate(muse.MuseScores.from_dict(row["scores"]), ref)
        row.update(passed=v.passed, criteria=v.to_dict()["criteria"])
    report["target"], report["target_passed"] = report["target_row"]["criteria"], report["target_row"]["passed"]
    report["thresholds"] = {**muse.DEFAULT_THRESHOLDS}
    return report


def fmt(c: dict[str, Any]) -> str:
    mark = "✅" if c["passed"] else "❌"
    return f"{c['value']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}] {mark}"


def gate_text(th: dict[str, Any]) -> str:
    """The gate's bars as the report's run judged them (muse.json's `thresholds`)."""
    if "privleak_tol_bio" not in th:  # a report judged before the calibrated bars and C3 per document kind
        return (f"the gate of that run (C1, C2 ≤ upper end of the retrain's interval; C3 within "
                f"±{th['privleak_tol']:.0%}; C4 ≥ {th['utility_frac']:.0%} of the retrain's). These bars predate "
                "the calibrated ones ([gate_calibration.md](gate_calibration.md)) and this muse.json holds no "
                "per-item scores, so `--regate` cannot judge it again: rerun `python -m benchmarks.muse` for a "
                "table under today's gate.")
    return ("C3 scores the raw documents (BOS only, nothing appended), pooled and per kind (biographies, "
            "question–answer texts). The gate's bars are the spread between exact retrains "
            "([gate_calibration.md](gate_calibration.md)): C1 ≤ the retrain's + "
            f"{th['verbmem_margin']:.3f}; C2 ≤ the retrain's + {th['knowmem_margin']:.3f}; "
            f"C3 within ±{th['privleak_tol']:.1%} pooled, ±{th['privleak_tol_bio']:.1%} "
            f"on biographies, ±{th['privleak_tol_qa']:.1%} on question–answer texts; "
            f"C4 ≥ {th['utility_frac']:.0%} of the retrain's.")


def timing_text(report: dict[str, Any]) -> str:
    """How the retrain's time compares with the methods' wall times: same load, or not."""
    if "retrain_timing" not in report:  # written before the retrain was timed among the other jobs
        return ("The retrain was timed alone, before the methods ran; their wall times were measured side by side "
                "with other jobs, so the × column favours the retrain.")
    t = report["retrain_timing"]
    if t["jobs"] == 1:
        return (f"Every wall time, the retrain's included, was measured one job at a time ({t['threads']} torch "
                f"thread(s), {t['cpu_count']} cores).")
    return (f"Every wall time, the retrain's included, was measured as one job among {t['jobs']} at once "
            f"({t['threads']} torch thread(s) each, {t['cpu_count']} cores): the retrain was run a second time as a "
            f"job beside the methods for its time (the reference, run alone first, took {t['reference_alone_s']:.0f} s).")


def markdown(report: dict[str, Any]) -> str:
    """The MUSE page's table from muse.json, in the criteria and bars its run was judged with."""
    ref, rt = report["reference"], report["retrain_s"]
    crit = [k for k in CRITERIA if k in report["target"]]
    per_kind = "privleak_bio" in crit
    heads = [HEADS[k] for k in crit]
    auc = [f"0 (AUC {ref['auc']:.3f})"] + (
        [f"0 (AUC {ref['auc_bio']:.3f})", f"0 (AUC {ref['auc_qa']:.3f})"] if per_kind else [])
    lines = [
        "## MUSE on the people world (tiny GPT-2, CPU)",
        "",
        f"World: {report['world']['n_people']} fictitious people, {report['world']['trained']} trained on, "
        f"forget fold of {report['world']['forget']} people ({report['world']['forget'] * 5} texts), "
        f"{report['world']['holdout']} holdout people ({report['world']['holdout'] * 5} texts) for PrivLeak, "
        f"which reads every text of each. Model: {report['model']}. "
        f"Retrain from scratch on the retained people: **{rt:.0f} s**. {timing_text(report)} "
        "Scores are ROUGE-L F1 fractions (MUSE prints ×100); PrivLeak is (AUC − AUC_retrain)/AUC_retrain. "
        f"Each cell: value [bootstrap 95% interval] and {gate_text(report['thresholds'])}",
        "",
        f"| model | {' | '.join(heads)} | all gates | wall s | × retrain time | epochs |",
        "|---|" + "---|" * (len(heads) + 4),
        f"| target (no unlearning) | {' | '.join(fmt(report['target'][k]) for k in crit)} | "
        f"{'pass' if report['target_passed'] else 'fail'} | – | – | – |",
        f"| retrain (reference) | {ref['verbmem']:.3f} | {ref['knowmem_forget']:.3f} | {' | '.join(auc)} | "
        f"{ref['knowmem_retain']:.3f} | pass | {rt:.0f} | 1 | – |",
    ]
    for r in report["methods"]:
        lines.append(f"| {r['method']} | {' | '.join(fmt(r['criteria'][k]) for k in crit)} | "
                     f"{'**pass**' if r['passed'] else 'fail'} | {r['wall_s']:.1f} | {r['wall_s'] / rt:.3f} | "
                     f"{r['epoch_chosen']}/{r['epochs_run']} ({r['stop']}) |")
    fast = [r["method"] for r in report["methods"] if r["passed"] and r["wall_s"] < rt / 5]
    lines += ["", f"Methods passing all gates in under a fifth of the retrain time: "
                  f"{', '.join(fast) if fast else 'none'}.", ""]
    if report.get("c5"):
        lines += ["C5 scalability (utility = KnowMem on the core people, trained and in no fold, after unlearning nested forget sets "
                  "from the target) and C6 sustainability (four disjoint folds unlearned one after another):", "",
                  "| method | C5 utility by forget size | C6 utility by request | C6 VerbMem on all folds so far |",
                  "|---|---|---|---|"]
        for m in report["c5"]:
            c5 = ", ".join(f"{r['size']}: {r['knowmem_retain']:.3f}" for r in report["c5"][m])
            c6 = ", ".join(f"{r['request']}: {r['knowmem_retain']:.3f}" for r in report["c6"][m])
            c6v = ", ".join(f"{r['request']}: {r['verbmem']:.3f}" for r in report["c6"][m])
            lines.append(f"| {m} | {c5} | {c6} | {c6v} |")
        lines += ["", "![C5](muse_c5.png) ![C6](muse_c6.png)", ""]
    return "\n".join(lines)


def regenerate(results: Path = RESULTS) -> str:
    """The page (muse.md) as rebuilt from the stored muse.json under `results`: what --markdown-only writes."""
    return page("muse", markdown(json.loads((results / "muse.json").read_text())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--curves", default="whp", help="methods to draw C5/C6 curves for ('all', 'none')")
    ap.add_argument("--zoo", default=".unlearn/zoo")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--threads", type=int, default=1, help="torch threads per job")
    ap.add_argument("--jobs", type=int, default=1, help="method runs and curves in this many processes at once "
                    "(wall times are then measured side by side)")
    ap.add_argument("--regate", action="store_true", help="re-judge the stored muse.json with the current bars")
    ap.add_argument("--markdown-only", action="store_true", help="rewrite muse.md from the stored muse.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.markdown_only:
        (out / "muse.md").write_text(regenerate(out))
        return
    if args.regate:
        report = regate(json.loads((out / "muse.json").read_text()))
        write_results(out, "muse", report, markdown(report))
        return
    methods = [m for m in args.methods.split(",") if m]
    curves = methods if args.curves == "all" else [] if args.curves == "none" else args.curves.split(",")
    fam = get_family("lm")
    target = ensure("people-lm", Path(args.zoo))
    world = world_of(target)
    work = Path(tempfile.mkdtemp(prefix="muse-bench-"))
    try:
        t0 = time.perf_counter()
        reference = work / "retrain"
        fam.retrain(target, world.retain, reference)
        retrain_s = time.perf_counter() - t0
        print(f"retrain {retrain_s:.1f}s", flush=True)
        ref_scores, target_scores = score(reference, world), score(target, world)
        v_target = muse.gate(target_scores, ref_scores)
        report: dict[str, Any] = {
            "world": {"n_people": len(world.people), "trained": len(world.trained), "forget": len(world.forget),
                      "holdout": len(world.holdout)},
            "model": "GPT-2, {n_layer} layers, width {n_embd}, MLP {n_inner} {activation}, byte-level BPE "
                     "{vocab_size} (learned from a separate generated world), {epochs} epochs, {params:,} parameters".format(
                         **DEFAULT_TRAIN, params=sum(p.numel() for p in HFLanguageModel.load(target).model.parameters())),
            "retrain_s": retrain_s, "thresholds": v_target.info["thresholds"],
            "reference": v_target.info["reference"], "target": v_target.to_dict()["criteria"],
            "target_passed": v_target.passed, "methods": [], "reference_scores": ref_scores.to_dict(),
            "target_row": {"scores": target_scores.to_dict()}}
        # the long runs first (C6, then C5 from the largest forget set), so short ones fill in meanwhile
        sizes = range(len(world.nested) - 1, -1, -1)
        # with several jobs at once, the retrain runs again as one of them, so its time shares the methods' load
        timing = [("retrain", "retrain", 0)] if args.jobs > 1 else []
        jobs = ([("c6", name, 0) for name in curves] + [("c5", name, k) for name in curves for k in sizes]
                + timing + [("method", name, 0) for name in methods])
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            done = dict(zip(jobs, pool.map(partial(run_job, target=target, reference=reference, work=work,
                                                   threads=args.threads), jobs), strict=True))
        report["retrain_s"] = done["retrain", "retrain", 0] if timing else retrain_s
        report["retrain_timing"] = {"jobs": args.jobs, "threads": args.threads, "cpu_count": os.cpu_count(),
                                    "reference_alone_s": retrain_s}
        report["methods"] = [done["method", name, 0] for name in methods]
        report["c5"] = {name: [row for k in sorted(sizes) for row in done["c5", name, k]] for name in curves}
        report["c6"] = {name: done["c6", name, 0] for name in curves}
        if curves:
            ref_curve = curve_scorer(world)(reference, world.forget)
            muse.plot_curves(report["c5"], "size", ["knowmem_retain", "verbmem"], out / "muse_c5.png",
                             "C5 scalability: unlearning nested forget sets", ref_curve)
            muse.plot_curves(report["c6"], "request", ["knowmem_retain", "verbmem"], out / "muse_c6.png",
                             "C6 sustainability: sequential requests", ref_curve)
        write_results(out, "muse", report, markdown(report))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
