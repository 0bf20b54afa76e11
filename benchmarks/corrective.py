"""Corrective unlearning on digits: SSD against retraining without the flagged samples and fine-tuning.

    python -m benchmarks.corrective      # writes benchmarks/results/corrective.{json,png,md}
    python -m benchmarks.corrective --seeds 0,1,2 --shares 0.25 --scenarios digits-backdoor   # other CNN seeds
    python -m benchmarks.corrective --markdown-only   # rebuild corrective.md from corrective.json

Scenarios: the backdoor CNN (`digits-backdoor`, a 4-pixel line in the last column relabelling
4% of the training samples to 0) and the interclass-confusion CNN (`digits-swap`, labels 1↔7
swapped in 40% of those classes); both trained with label smoothing 0.1. Requests flag 10%,
25% and 50% of the manipulated samples, three random draws each. Methods: SSD with the paper's
α = 10, λ = 1 and per-sample importances (our default), SSD with the reference code's batch of
64, SSD with α = 30 (sensitivity), RewoD (retrain without the flagged samples) and CF (fine-tune
the whole original on the unflagged data, 5 epochs, Adam 1e-3). Every candidate goes through the
corrective verifier; its gates: attack success (or 1↔7 confusion) ≤ 10%, clean accuracy ≥
original − 2.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.pages import page  # noqa: E402
from unlearn.data.poison import flagged_subset  # noqa: E402
from unlearn.families import Scope, get_family  # noqa: E402
from unlearn.families.classifier import dataset_of  # noqa: E402
from unlearn.methods import UnlearnTask, get_method  # noqa: E402
from unlearn.models import cnn  # noqa: E402
from unlearn.models.mlp import fit  # noqa: E402
from unlearn.zoo import CORRECTIVE_TRAIN, digits_cnn_meta, ensure, train_on_split  # noqa: E402

OUT = Path(__file__).parent / "results"
SHARES = (0.1, 0.25, 0.5)
DRAWS = (0, 1, 2)
METHODS = ("ssd", "ssd batch 64", "ssd a=30", "retrain w/o flagged", "fine-tune")
SCENARIOS = ("digits-backdoor", "digits-swap")
# What the script runs, in the words the page shows (the counts follow from the zoo recipes of the two CNNs).
HEADER = ('## Corrective unlearning on digits: SSD vs retrain-without-flagged vs fine-tuning\n\n'
          '`python -m benchmarks.corrective` (CNN, one CPU thread; three random draws of the flagged subset per share, `d0 / d1 / d2`\n'
          'and their mean). `digits-backdoor`: a 4-pixel line in the last column (rows 4–7; digits almost never ink it), label → 0,\n'
          "on 4% of the training split (45 samples). `digits-swap`: labels 1↔7 swapped in 40% of those classes' training samples\n"
          '(104). Both CNNs train 40 epochs with Adam 1e-3, weight decay 1e-4 and label smoothing 0.1. Effect column: attack success\n'
          'on triggered test images of classes ≠ 0 (backdoor) or the share of test 1s/7s read as the other (swap). Verifier gates:\n'
          'effect ≤ 10% and clean test accuracy ≥ original − 2 points. SSD = paper defaults α = 10, λ = 1, importances from\n'
          'per-sample gradients (batch 1) over the full training data and over the flagged samples; "ssd batch 64" = the reference\n'
          'code\'s batch size; "ssd a=30" shows the sensitivity to α. Fine-tune = whole network, 5 epochs Adam 1e-3 on the unflagged\n'
          'data.')
SSD_PARAMS = {"ssd": {}, "ssd batch 64": {"batch_size": 64}, "ssd a=30": {"alpha": 30.0}}


def finetune(base: Path, keep: list[str], out: Path) -> None:
    model, meta = cnn.load_module(base)
    X, y = dataset_of(base).take(keep)
    fit(model, X, y, epochs=5, lr=1e-3, batch_size=64, seed=0, weight_decay=1e-4)
    cnn.save(model, {**meta, "method": "finetune", "parent_dir": str(base)}, out)


def candidate(method: str, base: Path, flagged: list[str], keep: list[str], out: Path) -> float:
    scope = Scope(kind="corrective")
    t0 = time.perf_counter()
    if method in SSD_PARAMS:
        get_method("ssd").run(UnlearnTask("classifier", base, out, flagged, keep, scope, params=SSD_PARAMS[method]))
    elif method == "fine-tune":
        finetune(base, keep, out)
    else:
        get_family("classifier").retrain(base, keep, out)
    return time.perf_counter() - t0


def scenario_model(scenario: str, seed: int, zoo: Path) -> Path:
    """The scenario's CNN: the zoo's (seed 0), or the same recipe trained from another seed."""
    if seed == 0:
        return ensure(scenario, zoo)
    out = zoo / f"{scenario}-seed{seed}"
    if not (out / "unlearn.json").exists():
        meta = {**digits_cnn_meta(scenario, {"name": scenario, "seed": 0}, **CORRECTIVE_TRAIN), "seed": seed}
        train_on_split(meta, out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0", help="training seeds of the scenarios' CNNs (0: the zoo's), comma list")
    ap.add_argument("--shares", default=",".join(map(str, SHARES)), help="shares of the manipulated samples flagged")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--markdown-only", action="store_true", help="rewrite corrective.md from corrective.json")
    args = ap.parse_args()
    if args.markdown_only:
        (args.out / "corrective.md").write_text(regenerate(args.out))
        return
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    zoo = Path(tempfile.mkdtemp(prefix="corrective-bench-"))
    fam = get_family("classifier")
    rows = []
    try:
        for scenario, seed in itertools.product(args.scenarios.split(","), [int(x) for x in args.seeds.split(",")]):
            base = scenario_model(scenario, seed, zoo)
            data = dataset_of(base)
            for share in [float(x) for x in args.shares.split(",")]:
                for draw in DRAWS:
                    flagged = flagged_subset(data, share, draw)
                    keep = [s for s in data.ids_in("train") if s not in set(flagged)]
                    work = zoo / "work"
                    shutil.rmtree(work, ignore_errors=True)
                    dirs = {m: work / f"candidate-{i}" for i, m in enumerate(METHODS)}
                    secs = {m: candidate(m, base, flagged, keep, dirs[m]) for m in METHODS}
                    for m in METHODS:
                        v = fam.verify(dirs[m], dirs["retrain w/o flagged"], flagged, keep, Scope(kind="corrective"))
                        rows.append({"scenario": scenario, "model_seed": seed, "share": share, "draw": draw, "method": m,
                                     "n_flagged": len(flagged), "seconds": round(secs[m], 3),
                                     **v.info["candidate"], "passed": v.passed, "reasons": v.reasons,
                                     "original": v.info["original"]})
                    print(scenario, seed, share, draw, {r["method"]: (round(r["effect"], 3), round(r["clean_acc"], 3))
                                                  for r in rows[-len(METHODS):]}, flush=True)
    finally:
        shutil.rmtree(zoo, ignore_errors=True)
    (args.out / "corrective.json").write_text(json.dumps(rows, indent=2))
    plot(rows, args.out / "corrective.png")
    (args.out / "corrective.md").write_text(page("corrective", table(rows)))


def regenerate(results: Path = OUT) -> str:
    """The page (corrective.md) as rebuilt from the stored corrective.json under `results`: what --markdown-only writes."""
    return page("corrective", table(json.loads((results / "corrective.json").read_text())))


def plot(rows: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    for col, scenario in enumerate(("digits-backdoor", "digits-swap")):
        for row, key in enumerate(("effect", "clean_acc")):
            ax = axes[row, col]
            for m in METHODS:
                sel = [r for r in rows if r["scenario"] == scenario and r["method"] == m
                       and r.get("model_seed", 0) == 0]
                ax.plot([r["share"] for r in sel], [r[key] for r in sel], "o", alpha=0.6, label=m)
            orig = [r["original"][key] for r in rows if r["scenario"] == scenario][0]
            ax.axhline(orig, color="k", ls=":", lw=1, label="original")
            if key == "effect":
                ax.axhline(0.10, color="r", ls="--", lw=1, label="gate")
            ax.set_title(f"{scenario}: {'attack success' if 'backdoor' in scenario else '1↔7 confusion'}"
                         if key == "effect" else f"{scenario}: clean test accuracy")
            ax.set_xlabel("share of manipulated samples flagged")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(rows: list[dict]) -> str:
    """The page's header and table from corrective.json's rows; one block per scenario and training seed."""
    lines = [HEADER, "", "| scenario | flagged | method | attack success / confusion | clean acc | affected-class acc | "
             "time (s) | verifier |", "|---|---|---|---|---|---|---|---|"]
    models = sorted({(r["scenario"], r.get("model_seed", 0)) for r in rows},
                    key=lambda m: (SCENARIOS.index(m[0]), m[1]))
    for scenario, seed in models:
        mine = [r for r in rows if r["scenario"] == scenario and r.get("model_seed", 0) == seed]
        name = scenario if seed == 0 else f"{scenario} (seed {seed})"
        orig = mine[0]["original"]
        lines.append(f"| {name} | — | original | {100 * orig['effect']:.1f} | {100 * orig['clean_acc']:.1f} | "
                     f"{100 * orig['affected_acc']:.1f} | — | — |")
        for share in sorted({r["share"] for r in mine}):
            for m in METHODS:
                sel = [r for r in mine if r["share"] == share and r["method"] == m]
                def cell(key, sel=sel):
                    vals = [100 * r[key] for r in sel]
                    return " / ".join(f"{v:.1f}" for v in vals) + f" (mean {np.mean(vals):.1f})"
                passes = sum(r["passed"] for r in sel)
                lines.append(f"| {name} | {round(100 * share)}% ({sel[0]['n_flagged']}) | {m} | {cell('effect')} | "
                             f"{cell('clean_acc')} | {cell('affected_acc')} | "
                             f"{np.median([r['seconds'] for r in sel]):.2f} | {passes}/{len(sel)} pass |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
