"""Every family's gate, measured: power against doing nothing, false rejection of exact retrains with other
seeds, per family and scope.

For each family, model, scope and draw (a forget set), two kinds of candidate are verified as the service
verifies them (the family's `verify` with `unlearn.verification.gates_for`'s gates, then
`unlearn.verification.exactness_rule`), against the reference the service would use:
- "do nothing": the unchanged original, made by no method (so not exact). Power = the share refused.
- "exact retrain, another seed": the family's retrain recipe on the same retained set with a seed the
  reference does not use, made by the `retrain` method (exact). False rejection = the share refused.

Families:
- classifier (`--models`, default digits-mlp): scopes of 1, 5 and 50 random training samples, a subject, a
  class. The reference is the exact retrain (the original's seed); U-LiRA's retrains with other seeds are
  built as the service builds them (`ClassifierFamily.seeded_retrain`).
- lm (zoo `people-lm`): subject scope, one person per draw (the people world's sample *is* a person, so a
  one-sample request forgets the same texts and meets the same gates), and samples-N, N people per draw
  (`--scopes samples-15`: the size of the forget fold the MUSE bars were calibrated on). The reference is the family's retrain
  without the person (the target's seed), the other-seed candidates the same recipe with seeds from
  `CANDIDATE_SEEDS_FROM`; both from `benchmarks.gate_calibration.retrain`, cached under `--work/lm`.
- diffusion (zoo `digits-diffusion`, judged by `digits-judge`): class scope, one digit class per draw. The
  service verifies the diffusion family without a reference (policy "none": gates against the teacher), and
  so does this script; the other-seed candidate is the teacher's recipe (`train_teacher_artifact`) on the
  training samples of the other classes, written as `DiffusionFamily.retrain` writes it, seed changed; cached
  under `--work/diffusion`. Such a retrain is its own teacher (`teacher_of`: no "teacher_dir"), so its
  retained-class ratios compare it with itself; the rows also give its ratios against the original teacher.

Intervals are Clopper-Pearson 95%. One torch thread unless `UNLEARN_TORCH_THREADS` says otherwise. Results are
merged into `benchmarks/results/gate_power.json` (a family's rows of other models or scopes are kept, and so
are the other families'), rewritten after every draw, so a long run keeps what it measured.

    python -m benchmarks.gate_power [--families classifier] [--models digits-mlp] [--draws 4] [--retrains 1]
    python -m benchmarks.gate_power --families lm --scopes samples-15 --draws 2     # the committed lm rows:
    python -m benchmarks.gate_power --families lm --scopes subject --first-draw 5 --draws 10  #   these two,
                                                                                            #   in this order
    python -m benchmarks.gate_power --families diffusion --draws 10 --retrains 2 [--device cuda]
    python -m benchmarks.gate_power --markdown-only

Cost on the shared 2-core machine, one thread: an lm retrain 2–6 minutes, its verification 5–20 s; a diffusion
retrain about a minute, its verification under 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from benchmarks import gate_calibration
from unlearn.artifacts import read_meta
from unlearn.data import get_dataset
from unlearn.families import Scope, get_family
from unlearn.families.classifier import dataset_of
from unlearn.families.lm import world_of
from unlearn.settings import Settings
from unlearn.verification import exactness_rule, gates_for
from unlearn.verify.diffusion import N_PER_CLASS
from unlearn.verify.ulira import GATE_DEFAULTS
from unlearn.verify.verdict import Verdict
from unlearn.zoo import ensure

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FAMILIES = ("classifier", "lm", "diffusion")
SCOPES = ("samples-50", "class", "subject", "samples-5", "samples-1")  # the classifier's; the most telling first
FAMILY_SCOPES = {"classifier": SCOPES, "lm": ("subject",), "diffusion": ("class",)}
FAMILY_MODELS = {"classifier": "digits-mlp", "lm": "people-lm", "diffusion": "digits-diffusion"}
# the other-seed candidates' seeds (classifier: `seeded_retrain` indices): far from the U-LiRA references'
# 1, 2, 3 and from the LM calibration's retrains, 1..10
CANDIDATE_SEEDS_FROM = 101
LM_DRAW_SEED, DIFFUSION_DRAW_SEED = 23, 24  # the shuffles the lm's people and the diffusion model's classes are drawn from


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


def subjects_drawn(trained: Sequence[str], draws: int) -> list[str]:
    """The LM's subject-scope draws: the first `draws` people of one fixed shuffle of the trained people (a
    person is a subject), so a longer run extends a shorter one's draws instead of changing them."""
    return [str(s) for s in np.random.default_rng(LM_DRAW_SEED).permutation(sorted(trained))[:draws]]


def classes_drawn(num_classes: int, draws: int) -> list[int]:
    """The diffusion model's class-scope draws: the first `draws` classes of one fixed shuffle."""
    return [int(c) for c in np.random.default_rng(DIFFUSION_DRAW_SEED).permutation(num_classes)[:draws]]


def clopper_pearson(k: int, n: int) -> list[float]:
    """Exact 95% interval [low, high] of a binomial share k/n; [0, 1] when n = 0."""
    if n == 0:
        return [0.0, 1.0]
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return [float(ci.low), float(ci.high)]


def verdict_of(family: str, candidate: Path, reference: Path | None, forget: Sequence[str], keep: Sequence[str],
               scope: Scope, method: str | None, device: str = "cpu") -> Verdict:
    """The verdict the service gives `candidate` made by `method` (None: a model as trained): the family's
    `verify` under `gates_for`'s gates, then the rule that only an exact method certifies a request the
    verifier found indistinguishable (`exactness_rule`, which appends its row where it applies)."""
    fam = get_family(family)
    verdict = fam.verify(candidate, reference, list(forget), list(keep), scope, device=device,
                         thresholds=gates_for(family, method, scope))
    exactness_rule(verdict, method)
    return verdict


def outcome(verdict: Verdict) -> dict[str, Any]:
    """What a table row needs of one verdict: refused or not, the failing gated criteria (names and reasons),
    and every criterion's value."""
    gated = [c for c in verdict.criteria if c.decides]
    return {"refused": not verdict.passed, "failed": [c.name for c in gated if not c.passed],
            "reasons": verdict.reasons, "thresholds": {c.name: c.threshold for c in gated},
            "values": {c.name: None if c.value is None else float(c.value) for c in verdict.criteria}}


def judge(candidate: Path, reference: Path, forget: list[str], keep: list[str], scope: Scope,
          method: str | None) -> dict:
    """A classifier verdict, with U-LiRA's figures (`unlearn.verify.ulira`)."""
    verdict = verdict_of("classifier", candidate, reference, forget, keep, scope, method)
    rows = {c.name: c for c in verdict.criteria}
    return {"refused": not verdict.passed, "by_ulira": bool(rows["ulira"].decides and not rows["ulira"].passed),
            "indistinguishable": "indistinguishable" in verdict.info, "separation": verdict.info["ulira_separation"],
            "remembered_share": verdict.info["ulira_remembered_share"], "reasons": verdict.reasons}


def run_scope(name: str, scope_name: str, draws: int, retrains: int, work: Path, zoo: Path,
              first_draw: int = 0) -> dict:
    """The classifier `name`'s row for `scope_name` over `draws` forget sets, `retrains` other-seed
    candidates each: the draws `first_draw` … `first_draw + draws − 1` of the scope's fixed sequence (a
    rerun after a change of the gate can score forget sets that did not motivate it)."""
    model = ensure(name, zoo)
    data = dataset_of(model)
    fam = get_family("classifier")
    rng = np.random.default_rng(SCOPES.index(scope_name))  # the same forget sets for every model
    nothing, other = [], []
    for _ in range(first_draw):
        forget_set(data, scope_name, rng)
    for d in range(first_draw, first_draw + draws):
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
    return {"family": "classifier", "model": name, "scope": scope_name, "draws": draws, "first_draw": first_draw,
            "indistinguishable": sum(x["indistinguishable"] for x in nothing),
            "separation_median": float(np.median([x["separation"] for x in nothing])),
            "do_nothing": {"refused": k_n, "n": len(nothing), "rate": k_n / len(nothing),
                           "ci": clopper_pearson(k_n, len(nothing)),
                           "refused_by_ulira": sum(x["by_ulira"] for x in nothing)},
            "retrain_other_seed": {"refused": k_o, "n": len(other), "rate": k_o / len(other),
                                   "ci": clopper_pearson(k_o, len(other)),
                                   "reasons": sorted({r for x in other for r in x["reasons"]})}}


def tally(verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    """Refusals among `verdicts` (outcome dicts) with their interval, and how often each criterion failed."""
    k = sum(v["refused"] for v in verdicts)
    return {"refused": k, "n": len(verdicts), "rate": k / len(verdicts) if verdicts else None,
            "ci": clopper_pearson(k, len(verdicts)),
            "failed": dict(sorted(Counter(c for v in verdicts for c in v["failed"]).items()))}


def draw_row(family: str, model: str, scope: str, draws: list[dict[str, Any]]) -> dict[str, Any]:
    """A lm or diffusion row from its draws (each {"forget": …, "do_nothing": outcome, "other_seeds": [outcome]})."""
    return {"family": family, "model": model, "scope": scope, "draws": len(draws),
            "do_nothing": tally([d["do_nothing"] for d in draws]),
            "retrain_other_seed": tally([o for d in draws for o in d["other_seeds"]]), "per_draw": draws}


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """fn(*args, **kwargs) and its wall-clock seconds (one decimal)."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, round(time.perf_counter() - t0, 1)


def lm_forget_sets(trained: Sequence[str], scope: str, draws: int,
                   first_draw: int = 0) -> list[tuple[str, list[str], Scope]]:
    """The LM's draws `first_draw` … `first_draw + draws − 1` of `scope` as (label, forget ids, scope):
    "subject", one person each (`subjects_drawn`), or "samples-N", N people each from a fixed generator per
    N, so a longer run extends a shorter one's draws. Raises ValueError for another scope."""
    if scope == "subject":
        return [(p, [p], Scope(type="subject")) for p in subjects_drawn(trained, first_draw + draws)[first_draw:]]
    if not scope.startswith("samples-"):
        raise ValueError(f"the lm rows know the subject and samples-N scopes, not {scope!r}")
    n = int(scope.split("-")[1])
    rng = np.random.default_rng(LM_DRAW_SEED + n)
    sets = [sorted(rng.choice(sorted(trained), n, replace=False).tolist()) for _ in range(first_draw + draws)]
    return [(f"{n} people #{d}", ids, Scope(type="samples")) for d, ids in enumerate(sets)][first_draw:]


def run_lm(scope_name: str, draws: int, retrains: int, work: Path, zoo: Path, device: str,
           on_draw: Callable[[dict[str, Any]], None], first_draw: int = 0) -> dict[str, Any]:
    """people-lm's row for `scope_name` (`lm_forget_sets`, from draw `first_draw`): per draw, the target and
    `retrains` other-seed retrains verified against the family's retrain without the drawn people. Retrains are
    cached under `work`."""
    target = ensure(FAMILY_MODELS["lm"], zoo)
    world = world_of(target)
    seed = int(read_meta(target).get("seed", 0))
    done: list[dict[str, Any]] = []
    for label, forget, scope in lm_forget_sets(world.trained, scope_name, draws, first_draw):
        gone = set(forget)
        keep = [s for s in world.trained if s not in gone]
        ref, t_ref = timed(gate_calibration.retrain, target, seed, work, keep, device=device)
        verdict, t_nothing = timed(verdict_of, "lm", target, ref, forget, keep, scope, None, device)
        nothing = outcome(verdict)
        others, seconds = [], {"reference": t_ref, "verify_do_nothing": t_nothing}
        for r in range(retrains):
            cand, seconds[f"retrain_{r}"] = timed(gate_calibration.retrain, target, CANDIDATE_SEEDS_FROM + r, work,
                                                  keep, device=device)
            verdict, seconds[f"verify_retrain_{r}"] = timed(verdict_of, "lm", cand, ref, forget, keep, scope,
                                                            "retrain", device)
            others.append({**outcome(verdict), "seed": CANDIDATE_SEEDS_FROM + r})
        done.append({"forget": label, "forget_ids": forget, "do_nothing": nothing, "other_seeds": others,
                     "seconds": seconds})
        print(f"lm {scope_name} {label}: do nothing refused {nothing['refused']} {nothing['failed']}; retrains "
              f"refused {[(o['refused'], o['failed']) for o in others]}; {seconds}", flush=True)
        on_draw({**draw_row("lm", FAMILY_MODELS["lm"], scope_name, done), "first_draw": first_draw})
    return {**draw_row("lm", FAMILY_MODELS["lm"], scope_name, done), "first_draw": first_draw}


def diffusion_retrain(teacher: Path, keep: Sequence[str], seed: int, work: Path, device: str) -> Path:
    """`DiffusionFamily.retrain` of `teacher` on `keep` with `seed` (cached under `work`, per teacher folder:
    the retrain records its teacher's judge)."""
    teacher_tag = gate_calibration.ids_tag([str(Path(teacher).resolve())])
    return gate_calibration.built_once(
        work / f"teacher-{teacher_tag}retrain-{gate_calibration.ids_tag(keep)}seed-{seed}",
        lambda tmp: get_family("diffusion").retrain(teacher, keep, tmp, device=device, seed=seed))


def run_diffusion(scope_name: str, draws: int, retrains: int, work: Path, zoo: Path, device: str,
                  on_draw: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """digits-diffusion's class row: per drawn class, the teacher and `retrains` retrains without the class
    (other seeds) verified as the service verifies the family (no reference). Raises ValueError for a scope
    other than "class"."""
    if scope_name != "class":
        raise ValueError(f"the diffusion rows know the class scope, not {scope_name!r}")
    teacher = ensure(FAMILY_MODELS["diffusion"], zoo)
    data = get_dataset(read_meta(teacher)["dataset"])
    train = data.ids_in("train")
    done: list[dict[str, Any]] = []
    for label in classes_drawn(data.num_classes, draws):
        forget = [s for s in train if data.y[data.index[s]] == label]
        keep = [s for s in train if data.y[data.index[s]] != label]
        scope = Scope(type="class", label=label)
        verdict, t_nothing = timed(verdict_of, "diffusion", teacher, None, forget, keep, scope, None, device)
        nothing = outcome(verdict)
        teacher_acc, teacher_fd = verdict.info["teacher_retained_acc"], verdict.info["teacher_retained_fd"]
        others, seconds = [], {"verify_do_nothing": t_nothing}
        for r in range(retrains):
            cand, seconds[f"retrain_{r}"] = timed(diffusion_retrain, teacher, keep, CANDIDATE_SEEDS_FROM + r, work, device)
            v, seconds[f"verify_retrain_{r}"] = timed(verdict_of, "diffusion", cand, None, forget, keep, scope,
                                                      "retrain", device)
            # the same figures against the original teacher's (the verdict compares the retrain with itself)
            vs_teacher = {"retained_acc_ratio": v.info["retained_acc"] / teacher_acc,
                          "retained_fd_ratio": v.info["retained_fd"] / teacher_fd}
            others.append({**outcome(v), "seed": CANDIDATE_SEEDS_FROM + r, "against_original_teacher": vs_teacher})
        done.append({"forget": f"class {label}", "n_forget": len(forget), "do_nothing": nothing,
                     "other_seeds": others, "seconds": seconds})
        print(f"diffusion class {label}: do nothing refused {nothing['refused']} {nothing['failed']}; retrains "
              f"refused {[(o['refused'], o['failed']) for o in others]}; {seconds}", flush=True)
        on_draw(draw_row("diffusion", FAMILY_MODELS["diffusion"], "class", done))
    return draw_row("diffusion", FAMILY_MODELS["diffusion"], "class", done)


# ---------------------------------------------------------------- the stored results and their page


def load(path: Path) -> dict[str, Any]:
    """The stored results as {"families": {family: {"settings", "rows"}}}; a file of the classifier-only
    layout ({"settings", "rows"}) is read as the classifier's section."""
    if not path.exists():
        return {"families": {}}
    stored = json.loads(path.read_text())
    if "families" in stored:
        return stored
    return {"families": {"classifier": {"settings": stored["settings"],
                                        "rows": [{"family": "classifier", **r} for r in stored["rows"]]}}}


def merged(result: dict[str, Any], family: str, settings: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """`result` with `family`'s section holding `rows`, and its earlier rows of other (model, scope) pairs
    kept after them; `settings` replace the family's (they describe the run that made the new rows)."""
    section = result["families"].get(family, {"rows": []})
    fresh = {(r["model"], r["scope"]) for r in rows}
    kept = [r for r in section["rows"] if (r["model"], r["scope"]) not in fresh]
    families = {**result["families"], family: {"settings": settings, "rows": rows + kept}}
    return {"families": {f: families[f] for f in FAMILIES if f in families}}


def _ci(t: dict[str, Any]) -> str:
    return f"{t['refused']}/{t['n']} ({t['ci'][0]:.2f}–{t['ci'][1]:.2f})"


def _span(values: list[float]) -> str:
    return f"[{min(values):.3f}, {max(values):.3f}]"


def _failed(t: dict[str, Any]) -> str:
    return ", ".join(f"{name} ×{k}" for name, k in t["failed"].items()) or "–"


def classifier_markdown(section: dict[str, Any]) -> list[str]:
    s = section["settings"]
    lines = [
        "### classifier",
        "",
        f"_{s['draws']} forget sets per scope"
        + (f" (draws {s['first_draw']}–{s['first_draw'] + s['draws'] - 1} of each scope's fixed sequence: draws "
           f"0–{s['first_draw'] - 1} were measured before the last change of the gate, and are not scored here)"
           if s.get("first_draw") else "")
        + f", {s['retrains']} other-seed retrains each; U-LiRA with "
        f"{s['ulira_references']} retrains, separation gate {s['ulira_min_separation']}; {s['torch_threads']} "
        f"torch thread, {s['seconds']:.0f} s._",
        "",
        "| model | scope | indistinguishable | power: do nothing refused | of which by U-LiRA "
        "| false rejection: other-seed retrains refused | why they were refused |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in section["rows"]:
        dn, ro = r["do_nothing"], r["retrain_other_seed"]
        lines.append(f"| {r['model']} | {r['scope']} | {r['indistinguishable']}/{r['draws']} "
                     f"(median separation {r['separation_median']:.2f}) "
                     f"| {_ci(dn)} | {dn['refused_by_ulira']} | {_ci(ro)} | {'; '.join(ro['reasons']) or '–'} |")
    lines += ["", "Power counts a refusal for either reason: the likelihood ratio (distinguishable requests) or, "
              "where the original was indistinguishable from the retrains, the rule that only an exact method "
              "certifies such a request. The last column lists the failing criteria of the refused exact retrains "
              "(U-LiRA's row is `ulira`; the others are the gates kept beside it)."]
    return lines


def draws_markdown(family: str, section: dict[str, Any]) -> list[str]:
    s = section["settings"]
    lines = [f"### {family}", "",
             f"_Each forget set is one draw; the other-seed retrains use seeds from {CANDIDATE_SEEDS_FROM}. "
             f"{s['torch_threads']} torch thread(s) on {s['device']}; the last run took {s['seconds']:.0f} s "
             "(retrains read from the cache under `--work` cost nothing there; each draw's times are in the "
             "JSON)._", "",
             "| model | scope | forget sets | power: do nothing refused | failing criteria (do nothing) "
             "| false rejection: other-seed retrains refused | failing criteria (retrains) |",
             "|---|---|---|---|---|---|---|"]
    for r in section["rows"]:
        dn, ro = r["do_nothing"], r["retrain_other_seed"]
        drawn = ", ".join(d["forget"] for d in r["per_draw"])
        lines.append(f"| {r['model']} | {r['scope']} | {drawn} | {_ci(dn)} | {_failed(dn)} | {_ci(ro)} | {_failed(ro)} |")
    if family == "lm":
        lines += ["", "A person is one sample and one subject in the people world, so the subject row is also the "
                  "one-sample scope, and samples-N forgets N people. The noise bars are those the service picks "
                  "by the forget set's size (`muse.noise_bars`: benchmarks/results/gate_calibration.md, bars by "
                  "forget-set size); a single person is 1 biography and 4 question–answer texts, so there C1–C3 "
                  "read a handful of items and their bars are wide."]
        for r in section["rows"]:
            if r.get("first_draw"):
                lines += ["", f"The {r['scope']} row scores draws {r['first_draw']}–{r['first_draw'] + r['draws'] - 1} "
                             f"of its fixed sequence: draws 0–{r['first_draw'] - 1} were measured before the bars "
                             "by size, and motivated them."]
    if family == "diffusion":
        retrains = [o for r in section["rows"] for d in r["per_draw"] for o in d["other_seeds"]]
        th = s["thresholds"]
        lines += ["", "The service verifies this family against the teacher, not a reference; an exact retrain is "
                  "its own teacher (no `teacher_dir`), so its retained-class criteria compare it with itself and only "
                  "`forget_rate` can refuse it."]
        if retrains:
            lines[-1] += (
                " The exact retrains' forget rates reach "
                f"{max(o['values'].get('forget_rate', 0.0) for o in retrains):.2f} at most (gate ≤ {th['forget_rate']}, "
                f"{s['n_per_class']} generations per class). Against the original teacher their ratios span accuracy "
                f"{_span([o['against_original_teacher']['retained_acc_ratio'] for o in retrains])} (gate ≥ "
                f"{th['retained_acc_ratio']}) and Fréchet distance "
                f"{_span([o['against_original_teacher']['retained_fd_ratio'] for o in retrains])} (gate ≤ "
                f"{th['retained_fd_ratio']}).")
    return lines


def markdown(result: dict[str, Any]) -> str:
    """gate_power.md from the stored results: one table per family."""
    result = result if "families" in result else {"families": {"classifier": result}}
    lines = ["## Gate power", "",
             "_Generated by `python -m benchmarks.gate_power` from `gate_power.json`. Power: the share of "
             "\"do nothing\" candidates (the unchanged original) the service's gate refuses; false rejection: the "
             "share of exact retrains with other seeds it refuses. Intervals: Clopper-Pearson 95%._"]
    for family, section in result["families"].items():
        lines += [""] + (classifier_markdown(section) if family == "classifier" else draws_markdown(family, section))
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any]) -> None:
    """gate_power.json and .md, each replaced whole (a reader never sees half a file)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name, text in (("gate_power.json", json.dumps(result, indent=2)), ("gate_power.md", markdown(result))):
        tmp = RESULTS / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(text)
        tmp.replace(RESULTS / name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="classifier", help=f"comma list of {', '.join(FAMILIES)}")
    ap.add_argument("--models", default=FAMILY_MODELS["classifier"], help="the classifier family's zoo models")
    ap.add_argument("--scopes", help="comma list; default each family's own (classifier: "
                    f"{','.join(SCOPES)}; lm: subject, or samples-N; diffusion: class)")
    ap.add_argument("--draws", type=int, default=4)
    ap.add_argument("--retrains", type=int, default=1, help="other-seed retrains per draw")
    ap.add_argument("--first-draw", type=int, default=0,
                    help="the classifier's and lm's first forget set in each scope's fixed sequence of draws")
    ap.add_argument("--zoo", default=str(Settings().zoo_dir))
    ap.add_argument("--work", default=".unlearn/gate_power", help="cache of the lm and diffusion retrains")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--markdown-only", action="store_true", help="rewrite gate_power.md from the stored JSON")
    args = ap.parse_args()
    path = RESULTS / "gate_power.json"
    if args.markdown_only:
        (RESULTS / "gate_power.md").write_text(markdown(load(path)))
        return
    threads = int(os.environ.get("UNLEARN_TORCH_THREADS", "1"))
    torch.set_num_threads(threads)
    zoo, work = Path(args.zoo), Path(args.work)
    for family in args.families.split(","):
        if family not in FAMILIES:
            raise SystemExit(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
        t0 = time.perf_counter()
        settings: dict[str, Any] = {"draws": args.draws, "retrains": args.retrains, "torch_threads": threads}
        if family == "classifier":
            settings["first_draw"] = args.first_draw
            settings.update(ulira_references=int(GATE_DEFAULTS["ulira_references"]),
                            ulira_min_separation=GATE_DEFAULTS["ulira_min_separation"])
            rows: list[dict[str, Any]] = []
            with tempfile.TemporaryDirectory(prefix="gate-power-") as tmp:
                for name in args.models.split(","):
                    for scope in (args.scopes or ",".join(SCOPES)).split(","):
                        rows.append(run_scope(name, scope, args.draws, args.retrains, Path(tmp), zoo,
                                              args.first_draw))
                        # after each scope: a long run keeps what it measured
                        write(merged(load(path), family, {**settings, "seconds": time.perf_counter() - t0}, rows))
            continue
        settings.update(device=args.device, zoo=str(zoo), thresholds=gates_for(family, None, Scope(
            type=FAMILY_SCOPES[family][0], label=0 if family == "diffusion" else None)))
        if family == "diffusion":
            settings["n_per_class"] = N_PER_CLASS
        run = partial(run_lm, first_draw=args.first_draw) if family == "lm" else run_diffusion
        (work / family).mkdir(parents=True, exist_ok=True)
        rows = []  # this run's finished rows: each save writes them with the scope in progress
        for scope in (args.scopes.split(",") if args.scopes else FAMILY_SCOPES[family]):

            def save(row: dict[str, Any], family: str = family, settings: dict[str, Any] = settings,
                     t0: float = t0, rows: list[dict[str, Any]] = rows) -> None:
                write(merged(load(path), family, {**settings, "seconds": time.perf_counter() - t0}, [*rows, row]))

            row = run(scope, args.draws, args.retrains, work / family, zoo, args.device, save)
            save(row)
            rows.append(row)
    print(markdown(load(path)))


if __name__ == "__main__":
    main()
