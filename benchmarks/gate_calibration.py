"""Calibrate the MUSE gate on exact retrains: bars from the spread between retrains, checked leave-one-out.

An exact retrain (from scratch on the retained people) has forgotten exactly; it differs from the
verifier's reference only in its seed (weight initialisation and batch order). The gate must accept it,
so its bars have to cover what one seed does against another, and that is not what one reference's
bootstrap interval measures: a bootstrap over the reference's items holds its weights fixed, so an
exact retrain with another seed falls outside it about as often as not (benchmarks/results/
muse_gate_noise.md: one in four exact retrains failed). Here the bars come from the retrains' null
distribution instead:

- models: the zoo's reference (`people-lm-retrain`, seed 0) and K retrains with seeds 1..K, all on the
  default world's retained people, plus the untouched target (`people-lm`);
- each model is scored once as the verifier scores a candidate (`lm.muse_data`, `muse.score_model`);
- the null distribution: each gated quantity (mean VerbMem, mean KnowMem on forget, the Min-40% AUC
  pooled and per document kind) varies from seed to seed; over the N retrains it has mean μ and
  standard deviation s. A new exact retrain's value then lies, with probability 1 − α, below the
  Student-t prediction bound μ + t(1 − α, N − 1) · s · √(1 + 1/N) (and above μ − …): the interval for
  one more draw from the same normal distribution, with μ and s estimated from N draws;
- the bars are those prediction bounds expressed as the gate reads them, against the reference's own
  value v_ref: C1, C2 margin = bound − v_ref (too much memory is the failure, one-sided); C3 tolerance
  = the farther of the two bounds from AUC_ref, divided by AUC_ref (PrivLeak's normalisation;
  two-sided: an AUC too high leaks as surely as one too low). α: an exact retrain must clear the five
  noise bars at once, so each gets 5%/5 (Bonferroni; split over both sides for C3), which bounds the
  share of exact retrains the gate rejects at 5%. C4's bar is a policy (keep 90% of the reference's
  utility), lowered to the same kind of lower bound only if exact retrains could fall below it;
- why not the extreme over pairs of retrains (the largest gap between two of them): with ten or so
  retrains that is only about their 1/N tail per bar, five bars at once; the script measures its
  leave-one-out pass rate beside this one's (`pair_extremes`; the pairs' statistics are drawn, as
  histograms, in the plot). Why not one reference's bootstrap: it holds the weights fixed and misses
  the seed, the largest part of the spread;
- leave-one-out check: for each retrain i other than the reference the bars are derived again without
  model i, and retrain i is judged against the reference (seed 0) with those bars by `muse.gate`, as a
  candidate is. The pass rate over i is what a new exact retrain can expect; the target is judged with
  every bar set.

The bars the service uses (`muse.DEFAULT_THRESHOLDS`) are the ones derived from all K + 1 retrains,
rounded outwards to three decimals (`defaults` in the JSON).

Smaller requests (`by_size`): a request forgets one person, or a few, not the fold of 15, and two exact
retrains disagree far more on one biography and four answers than on the mean over 15 people. The retrains
here never saw any of the fold's people, so each subset of the fold is a request those retrains answer
exactly: for each size in `SIZES` (every single person, and `SUBSETS` random subsets of each larger size)
the same prediction bounds are computed on the subset's items alone (holdout and retained items unchanged),
and the size's bar is the largest over its subsets (so it covers the subset whose reference sits farthest
from the other retrains). The same leave-one-out check judges each retrain against the reference on every
subset with bars derived without it; the target is judged on every subset (power in sample: the held-out
measure is benchmarks/gate_power.py). The service's `muse.SIZE_BARS` are these, rounded outwards.

Writes benchmarks/results/gate_calibration.{json,md,png}. Retrains are cached under --work (about 2 minutes each on
one idle core; 15–40 minutes each on the shared machine of the stored run).

    python -m benchmarks.gate_calibration --seeds 10
    python -m benchmarks.gate_calibration --seed-list 1,2,3,4,5,8,9,10   # the committed table's retrains
    python -m benchmarks.gate_calibration --markdown-only                # rebuild its page from its JSON
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import itertools
import json
import math
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import t as student_t

from benchmarks.muse import RESULTS, write_results
from unlearn.artifacts import read_meta
from unlearn.families.lm import HFLanguageModel, forget_items, muse_data, retrain_from_meta, world_of
from unlearn.verify import muse
from unlearn.zoo import ensure

KINDS = ("bio", "qa")
SIZES = (1, 2, 3, 5, 10)  # forget-set sizes (people) with bars of their own; the fold's 15 has the defaults
SUBSETS = 20  # random subsets of the fold per size above 1 (size 1: every person)
SUBSET_SEED = 7
UTILITY_POLICY = 0.9  # C4: keep at least this fraction of the reference's utility
ALPHA = 0.05  # the share of exact retrains the gate may reject, over its five noise bars together
NOISE_BARS = 5  # C1, C2, C3 pooled, C3 per kind (two kinds)
# pair statistic -> the threshold it is compared with (the plot and the tables)
BARS = {"verbmem_gap": "verbmem_margin", "knowmem_gap": "knowmem_margin", "privleak": "privleak_tol",
        "privleak_bio": "privleak_tol_bio", "privleak_qa": "privleak_tol_qa", "utility_ratio": "utility_frac"}


def ids_tag(ids: Sequence[str]) -> str:
    """A cache folder's tag for a set of sample ids: 12 hex digits of the sorted ids' sha256 and a dash."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:12] + "-"


def retrain(target: Path, seed: int, work: Path, keep_ids: Sequence[str] | None = None, *,
            device: str = "cpu") -> Path:
    """The exact retrain with `seed` (cached under `work`): the target's recipe and tokenizer, on `keep_ids`
    (default: the world's retained people, the default forget fold's retain set). With the target's own seed
    this is the family's retrain, the service's reference (`LMFamily.retrain`: `retrain_from_meta` with the
    target's meta and tokenizer). The folder name carries `ids_tag(keep_ids)` when they are given, so the
    retrains of different forget sets never share a cache entry."""
    keep = world_of(target).retain if keep_ids is None else sorted(keep_ids)
    tag = "" if keep_ids is None else ids_tag(keep)
    return built_once(work / f"retrain-{tag}seed-{seed}", lambda tmp: retrain_from_meta(
        {**read_meta(target), "seed": seed}, keep, tmp, tokenizer_dir=target, device=device))


def built_once(out: Path, build: Callable[[Path], object]) -> Path:
    """`out`, made by `build(tmp)` into a temporary folder beside it and renamed into place, unless a finished
    one (its unlearn.json present) is already there: a run cut short never leaves half a model in the cache."""
    if not (out / "unlearn.json").exists():
        tmp = out.with_name(f".building-{out.name}")
        shutil.rmtree(tmp, ignore_errors=True)
        build(tmp)
        tmp.rename(out)
    return out


def _scoring_key(model_dir: Path, data: muse.MuseData) -> str:
    """Changes whenever the model's weights, what it is scored on, or how ROUGE tokenizes change (a stale
    cache is scored again)."""
    fields = {k: v for k, v in vars(data).items() if k != "qa_prompt"}
    weights = [(w.name, w.stat().st_size, w.stat().st_mtime_ns) for w in sorted(Path(model_dir).glob("*.safetensors"))]
    blob = (json.dumps([fields, weights], sort_keys=True) + inspect.getsource(muse.ScriptTokenizer)
            + str(muse.K_FRACTION))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def scores(model_dir: Path, data: muse.MuseData, work: Path, name: str) -> muse.MuseScores:
    """`model_dir`'s per-item scores as the verifier computes them, cached under `work`."""
    path = work / f"scores-{name}-{_scoring_key(model_dir, data)}.json"
    if not path.exists():
        path.write_text(json.dumps(muse.score_model(HFLanguageModel.load(model_dir), data).to_dict()))
    return muse.MuseScores.from_dict(json.loads(path.read_text()))


def stats(a: muse.MuseScores, b: muse.MuseScores) -> dict[str, float]:
    """The gate's statistics for candidate `a` against reference `b` (module docstring)."""
    out = {"verbmem_gap": float(a.verbmem.mean() - b.verbmem.mean()),
           "knowmem_gap": float(a.knowmem_forget.mean() - b.knowmem_forget.mean()),
           "privleak": abs(muse.privleak(muse.privleak_auc(*a.mink()), muse.privleak_auc(*b.mink()))),
           "utility_ratio": float(a.knowmem_retain.mean() / b.knowmem_retain.mean())}
    for kind in KINDS:
        out[f"privleak_{kind}"] = abs(muse.privleak(muse.privleak_auc(*a.mink(kind)), muse.privleak_auc(*b.mink(kind))))
    return out


def values(m: muse.MuseScores) -> dict[str, float]:
    """The per-model quantities the gate compares with the reference's."""
    return {"verbmem": float(m.verbmem.mean()), "knowmem_forget": float(m.knowmem_forget.mean()),
            "knowmem_retain": float(m.knowmem_retain.mean()), "auc": muse.privleak_auc(*m.mink()),
            **{f"auc_{k}": muse.privleak_auc(*m.mink(k)) for k in KINDS}}


def bars(models: dict[str, muse.MuseScores], reference: str = "seed-0") -> dict[str, float]:
    """Thresholds from the Student-t prediction bounds of the retrains in `models` (module docstring),
    relative to `reference`'s values."""
    vals = [values(m) for m in models.values()]
    ref, n = values(models[reference]), len(vals)
    one_sided = student_t.ppf(1 - ALPHA / NOISE_BARS, n - 1) * np.sqrt(1 + 1 / n)
    two_sided = student_t.ppf(1 - ALPHA / NOISE_BARS / 2, n - 1) * np.sqrt(1 + 1 / n)

    def spread(key: str) -> tuple[float, float]:
        x = np.array([v[key] for v in vals])
        return float(x.mean()), float(x.std(ddof=1))

    th = {}
    for key, name in (("verbmem", "verbmem_margin"), ("knowmem_forget", "knowmem_margin")):
        mu, sd = spread(key)
        th[name] = mu + one_sided * sd - ref[key]
    for key, name in (("auc", "privleak_tol"), *((f"auc_{k}", f"privleak_tol_{k}") for k in KINDS)):
        mu, sd = spread(key)
        # a reference AUC of 0 (one document it ranks above every holdout one) leaves the ratio undefined: no bar
        th[name] = (max(abs(mu + two_sided * sd - ref[key]), abs(mu - two_sided * sd - ref[key])) / ref[key]
                    if ref[key] > 0 else math.inf)
    mu, sd = spread("knowmem_retain")
    th["utility_frac"] = min(UTILITY_POLICY, (mu - one_sided * sd) / ref["knowmem_retain"])
    return th


def restricted(m: muse.MuseScores, items: Sequence[dict[str, np.ndarray]]) -> muse.MuseScores:
    """`m` on the forget items of the given people only (holdout and retained items unchanged)."""
    pick = {key: np.concatenate([it[key] for it in items]) for key in ("verbmem", "knowmem_forget", "mink_forget")}
    return muse.MuseScores(m.verbmem[pick["verbmem"]], m.knowmem_forget[pick["knowmem_forget"]], m.knowmem_retain,
                           m.mink_forget[pick["mink_forget"]], m.mink_holdout,
                           kinds_forget=m.kinds_forget[pick["mink_forget"]], kinds_holdout=m.kinds_holdout)


def subsets(n_people: int, size: int) -> list[list[int]]:
    """The fold's subsets of `size` people the size's bars are measured on: every person alone for size 1,
    else `SUBSETS` random ones (a fixed generator per size)."""
    if size == 1:
        return [[i] for i in range(n_people)]
    rng = np.random.default_rng(SUBSET_SEED + size)
    return [sorted(rng.choice(n_people, size, replace=False).tolist()) for _ in range(SUBSETS)]


def largest(bar_sets: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per bar, the loosest over the subsets' bars (the largest margin or tolerance, the smallest utility
    fraction)."""
    return {k: (min if k == "utility_frac" else max)(b[k] for b in bar_sets) for k in bar_sets[0]}


def by_size(models: dict[str, muse.MuseScores], target: muse.MuseScores,
            items: Sequence[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Bars per forget-set size and their checks (module docstring): for each size, the bars, the
    leave-one-out pass count of the retrains over (retrain, subset) pairs, and the target's refusals."""
    out = {}
    for size in SIZES:
        sets = [[items[i] for i in s] for s in subsets(len(items), size)]
        on = [{name: restricted(m, it) for name, m in models.items()} for it in sets]
        full = largest([bars(m) for m in on])
        loo_pass, loo_n, failed = 0, 0, Counter()
        for name in models:
            if name == "seed-0":
                continue
            th = largest([bars({k: v for k, v in m.items() if k != name}) for m in on])
            for m in on:
                j = judged(m[name], m["seed-0"], th)
                loo_pass, loo_n = loo_pass + j["passed"], loo_n + 1
                failed.update(j["failed"])
        tgt = [judged(restricted(target, it), m["seed-0"], rounded(full)) for it, m in zip(sets, on, strict=True)]
        out[str(size)] = {"subsets": len(sets), "bars": finite(full), "defaults": rounded(full),
                          "leave_one_out": {"passed": loo_pass, "n": loo_n, "failed": dict(failed)},
                          "target": {"refused": sum(not t["passed"] for t in tgt), "n": len(tgt),
                                     "failed": dict(Counter(c for t in tgt for c in t["failed"]))}}
    return out


def pair_extremes(models: dict[str, muse.MuseScores]) -> dict[str, float]:
    """The alternative bars measured for comparison: each the extreme of its statistic over every ordered
    pair of distinct models (C4 as in `bars`)."""
    pairs = [stats(models[a], models[b]) for a, b in itertools.permutations(models, 2)]
    th = {key: (min if stat == "utility_ratio" else max)(p[stat] for p in pairs) for stat, key in BARS.items()}
    th["utility_frac"] = min(UTILITY_POLICY, th["utility_frac"])
    return th


def rounded(th: dict[str, float]) -> dict[str, float | None]:
    """Bars rounded outwards to three decimals (margins and tolerances up, the utility fraction down); an
    infinite one (no bar) as None, as `muse.SIZE_BARS` holds it."""
    return {k: (None if math.isinf(v) else math.floor(v * 1000) / 1000 if k == "utility_frac"
                else math.ceil(v * 1000) / 1000) for k, v in th.items()}


def finite(th: dict[str, float]) -> dict[str, float | None]:
    """Bars as JSON holds them: an infinite one (no bar) as None."""
    return {k: None if math.isinf(v) else v for k, v in th.items()}


def judged(cand: muse.MuseScores, ref: muse.MuseScores, th: dict[str, float]) -> dict[str, Any]:
    # the intervals do not decide a pass; a few resamples keep the many verdicts here cheap
    v = muse.gate(cand, ref, {**th, "n_boot": 10, "n_boot_privleak": 5})
    return {"passed": v.passed, "failed": [c.name for c in v.criteria if not c.passed],
            "criteria": {c.name: {"value": c.value, "threshold": c.threshold, "passed": c.passed}
                         for c in v.criteria}}


def calibrate(models: dict[str, muse.MuseScores], target: muse.MuseScores) -> dict[str, Any]:
    """Bars from all retrains, the leave-one-out verdict of each retrain other than the reference, and
    the target's verdicts (with the full bars and with each leave-one-out set)."""
    ref = models["seed-0"]
    full = bars(models)
    loo = []
    for name in models:
        if name == "seed-0":
            continue
        others = {k: v for k, v in models.items() if k != name}
        th = bars(others)
        loo.append({"model": name, "bars": th, "stats": stats(models[name], ref), **judged(models[name], ref, th),
                    "passed_pair_extremes": judged(models[name], ref, pair_extremes(others))["passed"]})
    pairs = [stats(models[a], models[b]) for a, b in itertools.permutations(models, 2)]
    null = {stat: [p[stat] for p in pairs] for stat in BARS}
    return {"bars": full, "defaults": rounded(full), "null": null, "leave_one_out": loo,
            "target": {"stats": stats(target, ref), **judged(target, ref, rounded(full)),
                       "fails_every_loo_set": all(not judged(target, ref, r["bars"])["passed"] for r in loo)},
            "within_muse_band": sum(r["stats"]["privleak"] <= 0.05 for r in loo),
            "reference": {"auc": muse.privleak_auc(*ref.mink()),
                          **{f"auc_{k}": muse.privleak_auc(*ref.mink(k)) for k in KINDS}}}


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 6.4))
    for ax, (stat, key) in zip(axes.flat, BARS.items(), strict=True):
        ax.hist(report["null"][stat], bins=20, color="tab:blue", alpha=0.6, label="retrain vs retrain (null)")
        for r in report["leave_one_out"]:
            ax.axvline(r["stats"][stat], color="tab:green" if r["passed"] else "tab:red", linewidth=1, alpha=0.8)
        ax.axvline(report["defaults"][key], color="black", linestyle="--", label=f"bar {report['defaults'][key]:.3f}")
        ax.set_title(f"{stat}; target {report['target']['stats'][stat]:+.3f}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("MUSE gate bars from exact retrains (vertical lines: each retrain vs the reference, "
                 "green = passes with leave-one-out bars)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(report: dict[str, Any]) -> str:
    loo, tgt, d = report["leave_one_out"], report["target"], report["defaults"]
    passed = sum(r["passed"] for r in loo)
    ref = report["reference"]
    lines = [
        "## Gate calibration: bars from the spread between exact retrains",
        "",
        f"{len(loo) + 1} exact retrains of the people world's tiny GPT-2 (seeds 0, "
        f"{', '.join(str(k) for k in report['seeds'])}; seed 0 the "
        f"verifier's reference, PrivLeak AUC {ref['auc']:.3f} pooled, {ref['auc_bio']:.3f} on biographies, "
        f"{ref['auc_qa']:.3f} on question–answer texts) and the untouched target, scored as the verifier "
        "scores a candidate (C3 on raw documents, BOS only; ROUGE-L with `ScriptTokenizer`). Each bar is the "
        "Student-t prediction bound of one more exact retrain, from the retrains' mean and spread (their null "
        f"distribution), at {ALPHA:.0%} over the five noise bars together (Bonferroni), relative to the "
        "reference's value; each retrain is judged against the reference with bars derived *without* it "
        "(leave-one-out).",
        "",
        "| criterion | bar (all retrains) | retrains vs reference: [min, max] | target |",
        "|---|---|---|---|",
    ]
    names = {"verbmem_gap": "C1 VerbMem − reference's ≤", "knowmem_gap": "C2 KnowMem forget − reference's ≤",
             "privleak": "C3 \\|PrivLeak\\| pooled ≤", "privleak_bio": "C3 \\|PrivLeak\\| biographies ≤",
             "privleak_qa": "C3 \\|PrivLeak\\| question–answer ≤", "utility_ratio": "C4 KnowMem retain / reference's ≥"}
    for stat, key in BARS.items():
        vals = [r["stats"][stat] for r in loo]
        lines.append(f"| {names[stat]} | {d[key]:.3f} | [{min(vals):.3f}, {max(vals):.3f}] "
                     f"| {tgt['stats'][stat]:.3f} |")
    lines += ["", "| model (against seed 0) | C1 gap | C2 gap | \\|C3\\| pooled | \\|C3\\| bio | \\|C3\\| QA | C4 ratio "
              "| leave-one-out verdict |", "|---|---|---|---|---|---|---|---|"]
    for r in loo + [{"model": "target (no unlearning)", **tgt}]:
        s = r["stats"]
        verdict = "pass" if r["passed"] else "fail: " + ", ".join(r["failed"])
        lines.append(f"| {r['model']} | {s['verbmem_gap']:+.3f} | {s['knowmem_gap']:+.3f} | {s['privleak']:.3f} "
                     f"| {s['privleak_bio']:.3f} | {s['privleak_qa']:.3f} | {s['utility_ratio']:.3f} | {verdict} |")
    lines += ["", f"Exact retrains passing with leave-one-out bars: **{passed} of {len(loo)} "
              f"({passed / len(loo):.0%})**. The target fails with the service's bars "
              f"({', '.join(tgt['failed'])}) and with every leave-one-out set: "
              f"**{'yes' if tgt['fails_every_loo_set'] else 'no'}**. For comparison, bars at the largest gap "
              f"between two retrains (leave-one-out as well) pass {sum(r['passed_pair_extremes'] for r in loo)} "
              f"of {len(loo)}, and MUSE's ±5% PrivLeak band holds {report['within_muse_band']} of {len(loo)} exact "
              "retrains on the pooled documents.",
              "", "![gate calibration](gate_calibration.png)", ""]
    if "by_size" in report:
        lines += size_markdown(report["by_size"])
    return "\n".join(lines)


def size_markdown(sizes: dict[str, Any]) -> list[str]:
    """The by-size table: each size's bars (`muse.SIZE_BARS`), the retrains' leave-one-out pass count over
    (retrain, subset) pairs and the target's refusals."""
    lines = ["### Bars by forget-set size", "",
             f"Each size's bars are the largest of its subsets' prediction bounds (every person alone for size 1, "
             f"{SUBSETS} random subsets of the fold for the others); the retrains are judged leave-one-out on every "
             "subset, the target on every subset with the size's bars. The service applies a size's bars to "
             "requests of that size up to the next one (`muse.noise_bars`); from 15 people on, the table above. "
             "\"none\": on some subset the reference's AUC is 0 (it ranks the one biography above every holdout "
             "one), PrivLeak's ratio is undefined there, and the criterion is reported without a bar.", "",
             "| people forgotten | subsets | C1 margin | C2 margin | C3 pooled | C3 bio | C3 QA "
             "| exact retrains passing (leave-one-out) | target refused | target's failing criteria |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for size, r in sizes.items():
        d, loo, tgt = r["defaults"], r["leave_one_out"], r["target"]
        bar = {k: "none" if v is None else f"{v:.3f}" for k, v in d.items()}
        lines.append(f"| {size} | {r['subsets']} | {bar['verbmem_margin']} | {bar['knowmem_margin']} "
                     f"| {bar['privleak_tol']} | {bar['privleak_tol_bio']} | {bar['privleak_tol_qa']} "
                     f"| {loo['passed']}/{loo['n']} | {tgt['refused']}/{tgt['n']} "
                     f"| {', '.join(f'{k} ×{v}' for k, v in sorted(tgt['failed'].items())) or '–'} |")
    return [*lines, ""]


def regenerate(results: Path = RESULTS) -> str:
    """The page (gate_calibration.md) as rebuilt from the stored gate_calibration.json under `results`: what
    --markdown-only writes."""
    return markdown(json.loads((results / "gate_calibration.json").read_text()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10, help="retrain with seeds 1..N (at least 8)")
    ap.add_argument("--zoo", default=".unlearn/zoo")
    ap.add_argument("--work", default=".unlearn/gate_calibration", help="cache of retrains and their scores")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--cached-only", action="store_true", help="only the seeds among 1..N already retrained "
                    "under --work (retrains trained side by side by other processes)")
    ap.add_argument("--seed-list", help="exactly these retrain seeds, comma list (the committed table: "
                    "1,2,3,4,5,8,9,10); overrides --seeds")
    ap.add_argument("--markdown-only", action="store_true", help="rewrite gate_calibration.md from its stored JSON")
    args = ap.parse_args()
    if args.markdown_only:
        (Path(args.out) / "gate_calibration.md").write_text(regenerate(Path(args.out)))
        return
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    target, reference = ensure("people-lm", Path(args.zoo)), ensure("people-lm-retrain", Path(args.zoo))
    world = world_of(target)
    data = muse_data(world, world.forget, world.retain)
    wanted = [int(k) for k in args.seed_list.split(",")] if args.seed_list else range(1, args.seeds + 1)
    seeds = [k for k in wanted
             if not args.cached_only or (work / f"retrain-seed-{k}" / "unlearn.json").exists()]
    dirs = {"seed-0": reference, **{f"seed-{k}": retrain(target, k, work) for k in seeds}}
    models = {name: scores(d, data, work, name) for name, d in dirs.items()}
    target_scores = scores(target, data, work, "target")
    report = {"seeds": seeds, "world": world.spec(), **calibrate(models, target_scores),
              "by_size": by_size(models, target_scores, forget_items(world, world.forget))}
    out = Path(args.out)
    plot(report, out / "gate_calibration.png")
    write_results(out, "gate_calibration", report, markdown(report))


if __name__ == "__main__":
    main()
