"""How far each LM method's path gets towards the MUSE gate: forgetting against utility, step by step.

`benchmarks/muse.py` reports the checkpoint each method's stopping rule keeps. This one switches the
stopping rules off (utility floor 0, no AUC target) and follows every method for a fixed number of
epochs, scoring at each check, on the method's own probe (KnowMem on 15 retained people, KnowMem on
the forgotten people, the Min-40% AUC of all their texts against never-trained calibration people's):
a method could pass C2 and C4 together only if its path entered the box
{KnowMem forget ≤ the reference's, KnowMem retain ≥ 0.9 × the reference's}. Writes
benchmarks/results/muse_tradeoff.json, .md and .png.

    python -m benchmarks.muse_tradeoff                    # all six methods, 12 epochs each
    python -m benchmarks.muse_tradeoff --markdown-only    # rebuild muse_tradeoff.md from its JSON
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.muse import METHODS, RESULTS, run_method, write_results
from benchmarks.pages import page
from unlearn.families.lm import HFLanguageModel, world_of
from unlearn.methods.lm_unlearning import DEFAULTS, measure_probe, probe_data
from unlearn.zoo import ensure

FREE_RUN = {"utility_floor": 0.0, "target_auc": 2.0, "track_forget_knowledge": True, "check_every": 4,
            "utility_from_auc": None}


def reference_point(reference: Path, world) -> dict[str, float]:
    """The retrain reference on the same probe: where a method should end up."""
    probe = probe_data(world, world.forget, world.retain, DEFAULTS["probe_people"])
    return measure_probe(HFLanguageModel.load(reference), probe, track_forget=True)


def markdown(report: dict[str, Any]) -> str:
    ref = report["reference"]
    box_kf, box_kr = ref["knowmem_forget"], 0.9 * ref["utility"]
    lines = ["## Forgetting against utility: every LM method's path, stopping rules off", "",
             f"Probe scores (15 retained people, the {report['forget']} forgotten people, calibration people as "
             f"never-seen) every {FREE_RUN['check_every']} steps for {report['epochs']} epochs. The retrain reference: "
             f"KnowMem forget {ref['knowmem_forget']:.3f}, KnowMem retain {ref['utility']:.3f}, forget-vs-unseen AUC "
             f"{ref['auc_vs_unseen']:.3f}. Passing C2 and C4 together needs KnowMem forget ≤ {box_kf:.3f} while "
             f"KnowMem retain ≥ {box_kr:.3f}.", "",
             "| method | lowest KnowMem forget with retain ≥ bar | KnowMem retain when KnowMem forget first ≤ 0.2 | "
             "AUC vs unseen there | enters the box |", "|---|---|---|---|---|"]
    for name, curve in report["curves"].items():
        ok = [c for c in curve if c["utility"] >= box_kr]
        best = min(c["knowmem_forget"] for c in ok) if ok else float("nan")
        low = next((c for c in curve if c["knowmem_forget"] <= 0.2), None)
        inside = any(c["knowmem_forget"] <= box_kf and c["utility"] >= box_kr for c in curve)
        lines.append(f"| {name} | {best:.3f} | {low['utility']:.3f} | {low['auc_vs_unseen']:.3f} | "
                     f"{'yes' if inside else 'no'} |" if low else
                     f"| {name} | {best:.3f} | never ≤ 0.2 | – | {'yes' if inside else 'no'} |")
    lines += ["", "![trade-off](muse_tradeoff.png)", ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = report["reference"]
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name, curve in report["curves"].items():
        ax.plot([c["knowmem_forget"] for c in curve], [c["utility"] for c in curve], marker=".", label=name)
    ax.add_patch(plt.Rectangle((0, 0.9 * ref["utility"]), ref["knowmem_forget"], 1.02 - 0.9 * ref["utility"],
                               color="tab:green", alpha=0.25, label="C2 and C4 pass"))
    ax.scatter([ref["knowmem_forget"]], [ref["utility"]], color="black", marker="*", s=120, label="retrain", zorder=3)
    ax.set_xlabel("KnowMem on forget (probe) ↓")
    ax.set_ylabel("KnowMem on retain (probe) ↑")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.invert_xaxis()
    ax.legend(fontsize=7)
    ax.set_title("Paths from the target (top left) to the reference (star)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def regenerate(results: Path = RESULTS) -> str:
    """The page (muse_tradeoff.md) as rebuilt from the stored muse_tradeoff.json under `results`: what
    --markdown-only writes."""
    return page("muse_tradeoff", markdown(json.loads((results / "muse_tradeoff.json").read_text())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--zoo", default=".unlearn/zoo")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--markdown-only", action="store_true", help="rewrite muse_tradeoff.md from its stored JSON")
    args = ap.parse_args()
    if args.markdown_only:
        (Path(args.out) / "muse_tradeoff.md").write_text(regenerate(Path(args.out)))
        return
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    target, reference = ensure("people-lm", Path(args.zoo)), ensure("people-lm-retrain", Path(args.zoo))
    world = world_of(target)
    work = Path(tempfile.mkdtemp(prefix="muse-tradeoff-"))
    try:
        report: dict[str, Any] = {"epochs": args.epochs, "forget": len(world.forget),
                                  "reference": reference_point(reference, world), "curves": {},
                                  "wall_s": {}}
        for name in [m for m in args.methods.split(",") if m]:
            facts = run_method(name, target, world.forget, world.retain, work / name,
                               params={**FREE_RUN, "max_epochs": args.epochs, "min_steps": 0})
            report["curves"][name] = facts["curve"]
            report["wall_s"][name] = facts["wall_s"]
            print(name, f"{facts['wall_s']:.1f}s", flush=True)
        plot(report, out / "muse_tradeoff.png")
        write_results(out, "muse_tradeoff", report, markdown(report))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
