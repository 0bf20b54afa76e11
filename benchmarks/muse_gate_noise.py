"""Does the MUSE gate pass exact unlearning? Retrains from scratch with other seeds, judged against the reference.

A model retrained from scratch on the retained people has forgotten exactly; it differs from the
verifier's retrain reference only in its seed (weight init and batch order). Whatever the gate
rejects among such models it rejects for noise: 15 forgotten biographies for PrivLeak, 60 questions
for KnowMem. This benchmark retrains the default world's reference with seeds 1..K, verifies each
against the seed-0 reference exactly as a candidate is verified, and reports every criterion and
the pass rate. One more column scores PrivLeak as the verifier did before it read every text of each
person: on the biographies alone (15 forget, 150 holdout documents instead of 75 and 750), to show
what fewer documents do to C3's spread. Another reads C2's yardstick: KnowMem of each model on blocks of
never-trained holdout people as large as the forget fold, i.e. how often a model that never saw a fold's
people still reads above the C2 bar by its guesses alone. Writes benchmarks/results/muse_gate_noise.*.

    python -m benchmarks.muse_gate_noise --seeds 3 --jobs 2
    python -m benchmarks.muse_gate_noise --markdown-only   # rebuild muse_gate_noise.md from its JSON
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.muse import CRITERIA, HEADS, RESULTS, fmt, write_results
from benchmarks.pages import page
from unlearn.artifacts import read_meta
from unlearn.families import Scope, get_family
from unlearn.families.lm import HFLanguageModel, muse_data, retrain_from_meta, world_of
from unlearn.verify import muse
from unlearn.zoo import ensure


def side_scores(model_dir: Path) -> dict[str, Any]:
    """What the gate does not read, from one load of the model: PrivLeak's AUC on the biographies alone
    (`auc_bios`: the forgotten people's against the holdout people's), and KnowMem as C2 scores it on
    consecutive blocks of holdout people, each as large as the forget fold (`knowmem_never_seen`)."""
    world, lm = world_of(model_dir), HFLanguageModel.load(model_dir)

    def mink(ids: list[str]) -> np.ndarray:
        return np.array([muse.min_k_logprob(lp) for lp in lm.token_logprobs([world.person(s).bio for s in ids])])

    # the holdout people in the forget set's place: C2's own prompts and scoring
    scores = muse.score_model(lm, muse_data(world, world.holdout, world.retain), parts=("knowmem_forget",))
    know, block = scores.knowmem_forget, len(world.forget) * len(scores.knowmem_forget) // len(world.holdout)
    return {"auc_bios": muse.privleak_auc(mink(world.forget), mink(world.holdout)),
            "knowmem_never_seen": [float(know[i:i + block].mean()) for i in range(0, len(know) - block + 1, block)]}


def judge(model_dir: Path, reference: Path) -> dict[str, Any]:
    """The gate's verdict on `model_dir` against `reference`, plus its side scores."""
    world = world_of(model_dir)
    v = get_family("lm").verify(model_dir, reference, world.forget, world.retain, Scope(type="subject"))
    return {"passed": v.passed, "criteria": v.to_dict()["criteria"], "auc": v.info["auc"],
            "auc_retrain": v.info["auc_retrain"], **side_scores(model_dir)}


def retrain_and_judge(seed: int, target: Path, reference: Path, work: Path, threads: int) -> dict[str, Any]:
    """Own process: retrain on the retained people with `seed` (the target's tokenizer), then judge it."""
    torch.set_num_threads(threads)
    world, out = world_of(target), work / f"seed-{seed}"
    retrain_from_meta({**read_meta(target), "seed": seed}, world.retain, out, tokenizer_dir=target)
    return {"seed": seed, **judge(out, reference)}


def markdown(report: dict[str, Any]) -> str:
    """The page's table from muse_gate_noise.json, with the criteria its run was judged on."""
    ref_bios = report["reference"]["auc_bios"]
    crit = [k for k in CRITERIA if k in report["target"]["criteria"]]
    lines = [
        "## Does the MUSE gate pass exact unlearning?",
        "",
        f"Models retrained from scratch on the retained people with seeds other than the reference's, each "
        f"judged against the seed-0 reference (`people-lm-retrain`, PrivLeak AUC {report['reference']['auc']:.3f}) "
        "by the same gate as any candidate (PrivLeak on every text of each person: 75 forget, 750 holdout "
        "documents). \"C3 on biographies only\": PrivLeak on the 15 and 150 biographies alone, as the verifier read "
        f"it before; the reference's AUC there is {ref_bios:.3f}. Last column: KnowMem, as C2 scores it, on "
        "consecutive blocks of never-trained holdout people as large as the forget fold.",
        "",
        f"| model | {' | '.join(HEADS[k] for k in crit)} | all gates "
        "| C3 on biographies only | C2 on never-seen folds: mean [min, max], above the bar |",
        "|---|" + "---|" * (len(crit) + 3),
    ]
    bar = report["target"]["criteria"]["knowmem_forget"]["threshold"]

    def unseen(r: dict[str, Any]) -> str:
        never = r["knowmem_never_seen"]
        return (f"{np.mean(never):.3f} [{min(never):.3f}, {max(never):.3f}], "
                f"{sum(k > bar for k in never)} of {len(never)}")

    ref = report["reference"]
    c3 = " | ".join("0" for k in crit if k.startswith("privleak"))
    lines.append(f"| retrain (reference, seed 0) | – | {ref['knowmem_forget']:.3f} (bar {bar:.3f}) | {c3} | – | – "
                 f"| 0 | {unseen(ref)} |")
    for r in [report["target"]] + report["retrains"]:
        name = "target (no unlearning)" if r is report["target"] else f"retrain, seed {r['seed']}"
        lines.append(f"| {name} | {' | '.join(fmt(r['criteria'][k]) for k in crit)} | "
                     f"{'pass' if r['passed'] else 'fail'} | {muse.privleak(r['auc_bios'], ref_bios):+.3f} "
                     f"| {unseen(r)} |")
    passed = sum(r["passed"] for r in report["retrains"])
    lines += ["", f"Exact retrains passing all gates: **{passed} of {len(report['retrains'])}**.", ""]
    return "\n".join(lines)


def regenerate(results: Path = RESULTS) -> str:
    """The page (muse_gate_noise.md) as rebuilt from the stored muse_gate_noise.json under `results`: what
    --markdown-only writes."""
    return page("muse_gate_noise", markdown(json.loads((results / "muse_gate_noise.json").read_text())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="retrain with seeds 1..N")
    ap.add_argument("--zoo", default=".unlearn/zoo")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--threads", type=int, default=1, help="torch threads per job")
    ap.add_argument("--jobs", type=int, default=1, help="retrains in this many processes at once")
    ap.add_argument("--markdown-only", action="store_true", help="rewrite muse_gate_noise.md from its stored JSON")
    args = ap.parse_args()
    if args.markdown_only:
        (Path(args.out) / "muse_gate_noise.md").write_text(regenerate(Path(args.out)))
        return
    torch.set_num_threads(args.threads)
    target, reference = ensure("people-lm", Path(args.zoo)), ensure("people-lm-retrain", Path(args.zoo))
    work = Path(tempfile.mkdtemp(prefix="muse-gate-noise-"))
    try:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            retrains = list(pool.map(partial(retrain_and_judge, target=target, reference=reference, work=work,
                                             threads=args.threads), range(1, args.seeds + 1)))
        on_target = judge(target, reference)
        report = {"reference": {"auc": on_target["auc_retrain"], **side_scores(reference),
                                "knowmem_forget": on_target["criteria"]["knowmem_forget"]["reference"]},
                  "target": on_target, "retrains": retrains}
        write_results(Path(args.out), "muse_gate_noise", report, markdown(report))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
