"""LAF against retraining on digits, in LAF's three settings: class, data and noisy-label removal.

    python -m benchmarks.laf      # writes benchmarks/results/laf.{json,png,md}
    python -m benchmarks.laf --markdown-only   # rebuild laf.md from laf.json

Accuracy on D_r (remaining training data), D_f (forgotten) and D_t (test), the verifier's
loss-threshold MIA AUC (D_f against never-seen holdout samples; 0.5 = no membership signal)
and wall time, for the original, the retrained reference and LAF, over three seeds of the
forget-set draw (class removal: classes 0, 3, 6).
"""

from __future__ import annotations

import argparse
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
from unlearn.data.poison import load_noisy  # noqa: E402
from unlearn.families import Scope, get_family  # noqa: E402
from unlearn.families.classifier import dataset_of  # noqa: E402
from unlearn.methods import UnlearnTask, get_method  # noqa: E402
from unlearn.methods.laf import DEFAULTS, SETTINGS  # noqa: E402
from unlearn.models import cnn  # noqa: E402
from unlearn.verification import gates_for  # noqa: E402
from unlearn.verify.classifier import loss_mia_auc  # noqa: E402
from unlearn.zoo import digits_cnn_meta, ensure  # noqa: E402

OUT = Path(__file__).parent / "results"


def scores(model_dir: Path, data, forget, retain, y_forget_true=None, label=None) -> dict[str, float]:
    X, y = data.X, data.y
    lp = cnn.load(model_dir)(X)
    pred = lp.argmax(1)
    test, hold = data.rows(data.ids_in("test")), data.rows(data.ids_in("holdout"))
    if label is not None:  # class removal: non-members of the same class, as the verifier does
        hold = hold[y[hold] == label]
    out = {"D_r": float((pred[retain] == y[retain]).mean()), "D_f": float((pred[forget] == y[forget]).mean()),
           "D_t": float((pred[test] == y[test]).mean()),
           "mia_auc": loss_mia_auc(lp[forget], y[forget], lp[hold], y[hold])}
    if y_forget_true is not None:
        out["D_f_true_labels"] = float((pred[forget] == y_forget_true).mean())
    return out


def run_setting(setting: str, seed: int, base: Path, work: Path) -> dict:
    fam = get_family("classifier")
    data = dataset_of(base)
    train = data.ids_in("train")
    rng = np.random.default_rng(seed)
    y_true = label = None
    if setting == "class":
        label = [0, 3, 6][seed]
        forget = [s for s in train if data.y[data.index[s]] == label]
        scope = Scope(type="class", label=label, labels_known=False)
    elif setting == "data":
        forget = [s for s in train if data.y[data.index[s]] >= 5 and rng.random() < 0.4]
        scope = Scope(type="samples", labels_known=False)
    else:  # noisy: the original learned noisy labels; D_f is the relabelled samples
        noisy = load_noisy(seed=0, fraction=0.6)
        forget = list(noisy.extra["manipulated_ids"])
        data = noisy
        y_true = noisy.extra["clean_y"][noisy.rows(forget)]
        scope = Scope(kind="corrective", type="samples", labels_known=False)
    fs = set(forget)
    keep = [s for s in train if s not in fs]
    f_rows, r_rows = data.rows(forget), data.rows(keep)
    t0 = time.perf_counter()
    fam.retrain(base, keep, work / "ref")  # remaining labels are clean in all three settings
    t_ref = time.perf_counter() - t0
    facts = get_method("laf").run(UnlearnTask("classifier", base, work / "laf", forget, keep, scope))
    row = {"setting": setting, "seed": seed, "n_forget": len(forget), "laf_facts": facts,
           "original": scores(base, data, f_rows, r_rows, y_true, label),
           "retrain": {**scores(work / "ref", data, f_rows, r_rows, y_true, label), "seconds": round(t_ref, 2)},
           "laf": {**scores(work / "laf", data, f_rows, r_rows, y_true, label), "seconds": facts["seconds"]}}
    if setting != "noisy":
        verdict = fam.verify(work / "laf", work / "ref", forget, keep, scope,
                             thresholds=gates_for("classifier", "laf", scope))  # as the service gates LAF
        row["verdict"] = {"passed": verdict.passed, "reasons": verdict.reasons}
    return row


def noisy_base(work: Path) -> Path:
    """The CNN trained on noisy labels; its data-set spec is plain digits, whose labels are the
    true ones, so that retraining on the remaining (never relabelled) samples is exact."""
    meta = digits_cnn_meta("digits-cnn-noisy", {"name": "digits", "seed": 0})
    noisy = load_noisy(seed=0, fraction=0.6)
    X, y = noisy.take(noisy.ids_in("train"))
    cnn.train(meta, X, y, work / "noisy-base")
    return work / "noisy-base"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--markdown-only", action="store_true", help="rewrite laf.md from the stored laf.json")
    if ap.parse_args().markdown_only:
        (OUT / "laf.md").write_text(regenerate())
        return
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    zoo = Path(tempfile.mkdtemp(prefix="laf-bench-"))
    rows = []
    try:
        clean = ensure("digits-cnn", zoo)
        noisy = noisy_base(zoo)
        for setting, base in (("class", clean), ("data", clean), ("noisy", noisy)):
            for seed in (0, 1, 2):
                work = zoo / f"{setting}-{seed}"
                rows.append(run_setting(setting, seed, base, work))
                shutil.rmtree(work, ignore_errors=True)
                r = rows[-1]
                print(setting, seed, {m: {k: round(v, 3) for k, v in r[m].items()} for m in ("retrain", "laf")},
                      r.get("verdict"), flush=True)
    finally:
        shutil.rmtree(zoo, ignore_errors=True)
    (OUT / "laf.json").write_text(json.dumps(rows, indent=2))
    plot(rows)
    (OUT / "laf.md").write_text(page("laf", header(rows) + table(rows)))


def regenerate(results: Path = OUT) -> str:
    """The page (laf.md) as rebuilt from the stored laf.json under `results`: what --markdown-only writes."""
    rows = json.loads((results / "laf.json").read_text())
    return page("laf", header(rows) + table(rows))


def plot(rows: list[dict]) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    metrics = ["D_r", "D_f", "D_t", "mia_auc"]
    for ax, setting in zip(axes, ("class", "data", "noisy"), strict=True):
        sel = [r for r in rows if r["setting"] == setting]
        for i, model in enumerate(("original", "retrain", "laf")):
            vals = np.array([[r[model][m] for m in metrics] for r in sel])
            ax.bar(np.arange(4) + (i - 1) * 0.27, vals.mean(0), 0.27, yerr=vals.std(0), label=model)
        ax.set_xticks(range(4), metrics)
        ax.set_title(f"{setting} removal")
    axes[0].set_ylabel("accuracy / AUC (mean ± sd, 3 seeds)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(OUT / "laf.png", dpi=120)


def header(rows: list[dict]) -> str:
    """What was run, with LAF's settings as the run's own facts report them (laf.json), and the stops measured."""
    cls, noisy, data = ({**DEFAULTS, **SETTINGS[key], **next(r["laf_facts"] for r in rows if r["setting"] == setting)}
                        for setting, key in (("class", "class"), ("noisy", "corrective"), ("data", "data")))
    stops = " / ".join(str(r["laf_facts"]["stopped_at_epoch"] or "—") for r in rows if r["setting"] == "data")
    return f"""## LAF (Label-Agnostic Forgetting) vs retrain on digits

`python -m benchmarks.laf` (CNN `digits-cnn`, one CPU thread, values for 3 seeds as `s0 / s1 / s2`).
Class removal forgets classes 0 / 3 / 6; data removal forgets 40% of each of classes 5–9 (LAF's task);
noisy-label removal: the CNN learned labels of which 60% of classes 0–4 were relabelled at random, and D_f is the
relabelled set (the same draw for all three rows, so those repeat). D_f is scored against the training labels (as LAF's
code does) and, for noisy labels, also against the true ones. MIA AUC: the verifier's loss-threshold attack, D_f against
never-seen holdout samples (same class for class removal). Verdict: the classifier verifier with LAF's gates (class:
forget acc ≤ retrain + 5, remaining-class test acc ≥ retrain − 2; data: |forget acc − retrain| ≤ 3) plus the project's
default MIA gate (|privleak| ≤ 0.15). LAF settings: lr_UE {data["lr_ue"]:g}, lr_RA {data["lr_ra"]:g}; class
{cls["epochs"]} epochs τ {cls["tau"]:g}; noisy (a corrective request) {noisy["epochs"]} epochs τ {noisy["tau"]:g}; data
τ {data["tau"]:g}, at most {data["epochs"]} epochs, stopping after the first epoch at which the model's mean top-class
probability on D_f is no higher than on the unlabelled holdout inputs (label-free; the stop fired at epoch {stops}, — where it ran all {data["epochs"]}).
Time includes the two VAEs.

"""


def table(rows: list[dict]) -> str:
    lines = ["| setting | model | D_r | D_f | D_f (true labels) | D_t | MIA AUC | time (s) | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for setting in ("class", "data", "noisy"):
        sel = [r for r in rows if r["setting"] == setting]
        for model in ("original", "retrain", "laf"):
            def cell(key, model=model, sel=sel):
                vals = [r[model].get(key) for r in sel]
                if any(v is None for v in vals):
                    return "—"
                return " / ".join(f"{100 * v:.1f}" if key != "mia_auc" else f"{v:.2f}" for v in vals)
            secs = " / ".join(f"{r[model]['seconds']:.1f}" for r in sel) if model != "original" else "—"
            verdict = " / ".join("pass" if r["verdict"]["passed"] else "fail" for r in sel) \
                if model == "laf" and "verdict" in sel[0] else "—"
            lines.append(f"| {setting} | {model} | {cell('D_r')} | {cell('D_f')} | {cell('D_f_true_labels')} | "
                         f"{cell('D_t')} | {cell('mia_auc')} | {secs} | {verdict} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
