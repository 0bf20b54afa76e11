"""SFD on a text-to-image pipeline against ESD and against retraining without the concept's captions.

Concept "circle" → override "square" on the zoo's `shapes-t2i` (16×16 captioned shapes), judged by
`shapes-judge` (never used by a method). For each method: the judge's forget rate on the forget prompts,
the override rate, judged accuracy on the held-out remaining prompts (captions without the concept that
no method optimised), the judge-feature Fréchet distance to the teacher's images of those prompts, the
verifier's gates, and wall time. The teacher and judge come from the zoo cache (built first; not timed).

    python -m benchmarks.sfd_t2i                 # CPU, 1 thread
    python -m benchmarks.sfd_t2i --device cuda   # the same on a GPU
    python -m benchmarks.sfd_t2i --render        # redraw the table from sfd_t2i.json
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

from unlearn.data import get_dataset
from unlearn.families import Scope, get_family
from unlearn.families.text_diffusion import concept_prompts
from unlearn.methods import UnlearnTask, get_method
from unlearn.settings import get_settings
from unlearn.verify.diffusion import DEFAULT_THRESHOLDS
from unlearn.verify.text_diffusion import SEED, judged_prompts, plot_grid
from unlearn.zoo import ensure

RESULTS = Path(__file__).resolve().parent / "results"
NFE = {"teacher": 20, "sfd": 1, "esd": 20, "retrain": 20}  # 10 DDIM steps × 2 for CFG
GATES = {"forget_rate": ("<=", DEFAULT_THRESHOLDS["forget_rate"]),
         "retained_acc_ratio": (">=", DEFAULT_THRESHOLDS["retained_acc_ratio"]),
         "retained_fd_ratio": ("<=", DEFAULT_THRESHOLDS["retained_fd_ratio"])}


def row(method: str, verdict, seconds: float | None, prefix: str = "") -> dict[str, Any]:
    """One table row from a verdict: the candidate's figures, or with prefix "reference_" the retrain's."""
    info = verdict.info
    crit = {c.name: (c.reference if prefix else c.value) for c in verdict.criteria}
    failed = [n for n, (op, th) in GATES.items() if not (crit[n] <= th if op == "<=" else crit[n] >= th)]
    return {"method": method, "seconds": seconds, "nfe": NFE[method],
            **{k: info[prefix + k] for k in ("forget_rate", "override_rate", "retained_acc", "retained_fd")},
            "retained_acc_ratio": crit["retained_acc_ratio"], "retained_fd_ratio": crit["retained_fd_ratio"],
            "passed": not failed, "failed": failed}


def run(work: Path, device: str, sfd_steps: int | None, concept: str, override: str) -> dict[str, Any]:
    zoo = get_settings().zoo_dir
    judge_dir = ensure("shapes-judge", zoo, device=device)
    teacher = ensure("shapes-t2i", zoo, device=device)
    fam = get_family("diffusion")
    data = get_dataset({"name": "shapes", "seed": 0})
    scope = Scope(kind="corrective", type="concept", concept=concept, extra={"override": override})
    prompts = concept_prompts([c for c, sp in zip(data.captions, data.split, strict=True) if sp == "train"], scope)
    train = data.ids_in("train")
    keep = [s for s in train if concept not in data.captions[data.index[s]]]
    ref = work / "retrain"
    started = time.perf_counter()
    if not (ref / "unlearn.json").exists():
        fam.retrain(teacher, keep, ref, device=device)
    retrain_s = time.perf_counter() - started
    teacher_v = fam.verify(teacher, ref, [], keep, scope, device=device)
    rows = [row("teacher", teacher_v, None), row("retrain", teacher_v, retrain_s, prefix="reference_")]
    grid = [("teacher", *judged(teacher, judge_dir, prompts, device)), ("retrain", *judged(ref, judge_dir, prompts,
                                                                                                device))]
    for method in ("sfd", "esd"):
        out = work / method
        shutil.rmtree(out, ignore_errors=True)
        params = {"steps": sfd_steps} if method == "sfd" and sfd_steps else {}
        started = time.perf_counter()
        get_method(method).run(UnlearnTask("diffusion", teacher, out, [], keep, scope=scope, device=device,
                                           params=params))
        seconds = time.perf_counter() - started
        v = fam.verify(out, None, [], keep, scope, device=device)
        rows.append(row(method, v, seconds))
        grid.append((method, *judged(out, judge_dir, prompts, device)))
        print(json.dumps(rows[-1]), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot_grid(grid, RESULTS / "sfd_t2i.samples.png")
    return {"concept": concept, "override": override, "sfd_steps": sfd_steps, "rows": rows,
            "forget_prompts": len(prompts.forget_prompts), "remaining_heldout": len(prompts.remaining_heldout),
            "teacher": str(teacher), "device": device, "torch_threads": torch.get_num_threads(),
            "machine": platform.platform(), "gates": {n: f"{op} {th}" for n, (op, th) in GATES.items()}}


def judged(model_dir: Path, judge_dir: Path, prompts, device: str):
    md, jd = str(Path(model_dir).resolve()), str(Path(judge_dir).resolve())
    return (judged_prompts(md, jd, tuple(prompts.forget_prompts), seed=SEED, device=device),
            judged_prompts(md, jd, tuple(prompts.remaining_heldout), seed=SEED, device=device))


def markdown(result: dict[str, Any]) -> str:
    lines = [f"SFD on text-to-image (`shapes-t2i`, 16×16 captioned shapes): forget **{result['concept']}** → "
             f"override **{result['override']}** ({result['device']}, {result['torch_threads']} torch thread(s), "
             f"{result['machine']}; total {result.get('total_seconds', 0) / 60:.1f} min). Judge `shapes-judge` "
             f"(shape × colour), 20 generations per prompt from fixed seeds, {result['forget_prompts']} forget prompts "
             f"and {result['remaining_heldout']} held-out remaining prompts. Retained FD: judge-feature Fréchet "
             "distance to the teacher's images of the remaining prompts; its ratio divides by the teacher's own FD "
             "to the data set's images of those captions. SFD: "
             f"{result.get('sfd_steps') or 'the default'} steps; ESD: the method's defaults; retrain: the teacher's "
             "recipe on the train split without every caption that mentions the concept. Wall times exclude "
             "verification.",
             "",
             "| method | forget rate | override rate | remaining acc | remaining FD (ratio) | NFE/image "
             "| wall time (s) | gates |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        secs = "—" if r["seconds"] is None else f"{r['seconds']:.0f}"
        gate = "pass" if r["passed"] else "fail: " + ", ".join(r["failed"])
        lines.append(f"| {r['method']} | {r['forget_rate']:.3f} | {r['override_rate']:.3f} | {r['retained_acc']:.3f} "
                     f"({r['retained_acc_ratio']:.2f}× teacher) | {r['retained_fd']:.2f} ({r['retained_fd_ratio']:.2f}) "
                     f"| {r['nfe']} | {secs} | {gate} |")
    lines += ["", "Samples from fixed seeds (rows: forget prompts, then held-out remaining prompts; "
              "columns: 4 seeds per model):", "", "![SFD on shapes-t2i: samples](sfd_t2i.samples.png)"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", type=Path, default=Path(".unlearn/bench-sfd-t2i"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sfd-steps", type=int, default=None, help="SFD steps (default: the method's)")
    parser.add_argument("--concept", default="circle")
    parser.add_argument("--override", default="square")
    parser.add_argument("--render", action="store_true", help="only redraw the table from sfd_t2i.json")
    args = parser.parse_args()
    if args.render:
        result = json.loads((RESULTS / "sfd_t2i.json").read_text())
        (RESULTS / "sfd_t2i.md").write_text(markdown(result))
        return
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    result = run(args.work, args.device, args.sfd_steps, args.concept, args.override)
    result["total_seconds"] = time.perf_counter() - started
    (RESULTS / "sfd_t2i.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "sfd_t2i.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
