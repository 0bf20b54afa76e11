"""MUSE's six criteria for causal language models (Shi et al., 2024, arXiv 2407.06460).

- C1 VerbMem: ROUGE-L F1 between the greedy continuation of a forget-set prefix and the true one.
- C2 KnowMem on D_forget: few-shot "Question:/Answer:" prompt, greedy answer, ROUGE-L F1 against the answer.
- C3 PrivLeak: Min-K% Prob (k = 40%) AUC of forget against holdout documents, normalised by the
  retrain model's AUC: (AUC − AUC_retrain) / AUC_retrain. MUSE's orientation: forget documents are
  labelled 0 and holdout 1, so AUC ≈ 0 for a model that memorised, ≈ 0.5 for one that never saw them.
  The documents are scored as MUSE scores them: the raw text, the tokenizer's BOS in front, nothing
  appended (no EOS, no separator). Where the documents come in kinds (biographies, question–answer
  texts), C3 is computed pooled and for each kind alone, and each is gated: a forgotten kind that reads
  *less* familiar than never-seen text of its kind leaks membership as surely as one that reads more.
- C4 UtilityPreserve: KnowMem on D_retain.
- C5 Scalability and C6 Sustainability: utility (and forgetting) against forget-set size and against
  the number of sequential requests; curves, not gates (`scalability`, `sustainability`, `plot_curves`).

ROUGE-L is `rouge-score`'s, with `ScriptTokenizer` in place of its default tokenizer (which keeps only
a–z and 0–9, so every non-ASCII letter vanishes); AUC from scikit-learn. Scores are fractions in [0, 1]
(MUSE prints ×100). Every scored set gets a percentile-bootstrap 95% interval (shown, not gated).

The gate ("behave like an exact retrain"), every bound configurable per model. The bars are the spread
between exact retrains that differ only in their seed (their null distribution, measured by
`benchmarks/gate_calibration.py`), not one reference's bootstrap interval, which ignores the seed. That
spread depends on how many people a request forgets: one person is one biography and a few answers, and
two exact retrains disagree on those far more than on the mean over fifteen. So the noise bars come by
forget-set size (`noise_bars`), each measured on subsets of that size of the calibration's forget fold:
- C1, C2: the candidate's mean at most the reference's mean + `verbmem_margin` / `knowmem_margin`;
- C3: |PrivLeak| ≤ `privleak_tol` pooled, and ≤ `privleak_tol_<kind>` for each kind of document;
- C4: the candidate's KnowMem on retain at least `utility_frac` × the reference's (a policy on how much
  utility may be lost; the calibration checks that exact retrains clear it).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rouge_score import rouge_scorer
from sklearn.metrics import roc_auc_score

from unlearn.verify.verdict import Criterion, Verdict, criterion, not_applicable

K_FRACTION = 0.4  # Min-40% Prob, MUSE's PrivLeak score
VERBMEM_NEW_TOKENS = 128
KNOWMEM_NEW_TOKENS = 32
KNOWMEM_STOPS = ("\n\n", "\nQuestion", "Question:")

# The noise bars below are the Student-t prediction bounds of one more exact retrain of the default people
# world, from benchmarks/results/gate_calibration.json (tests/test_muse.py checks that they are that file's),
# for a request that forgets the whole calibration fold (15 people, 150 holdout people); `SIZE_BARS` holds
# those for smaller requests. They are this world's noise: a model with other data sets its own through the
# request's or model's thresholds. MUSE's own ±5% PrivLeak band assumes hundreds of documents per set.
NOISE_BARS = ("verbmem_margin", "knowmem_margin", "privleak_tol", "privleak_tol_bio", "privleak_tol_qa")
CALIBRATED_SIZE = 15  # forgotten people (verbmem items) in the fold of DEFAULT_THRESHOLDS' noise bars
DEFAULT_THRESHOLDS: dict[str, float] = {
    "verbmem_margin": 0.049,  # C1: candidate mean ≤ reference mean + this
    "knowmem_margin": 0.051,  # C2: the same for KnowMem on forget
    "privleak_tol": 0.13,  # C3 pooled: |PrivLeak| ≤ this
    "privleak_tol_bio": 0.193,  # C3 on biographies alone
    "privleak_tol_qa": 0.145,  # C3 on question–answer texts alone
    "utility_frac": 0.9,  # C4: KnowMem_retain ≥ this × the reference's
    "n_boot": 1000,
    "n_boot_privleak": 200,  # each resample costs two scikit-learn AUCs (milliseconds each)
    "seed": 0,
}
# forget-set size (people; for a records model, forgotten texts) -> its noise bars: gate_calibration.json's
# "by_size" defaults, each the largest over subsets of that size of the fold (tests/test_muse.py checks them)
# (None: no bar; the criterion is shown, not gated)
SIZE_BARS: dict[int, dict[str, float | None]] = {
    1: {"verbmem_margin": 0.43, "knowmem_margin": 0.542, "privleak_tol": 0.867,
        "privleak_tol_bio": None, "privleak_tol_qa": 0.832},
    2: {"verbmem_margin": 0.375, "knowmem_margin": 0.323, "privleak_tol": 0.556,
        "privleak_tol_bio": 4.11, "privleak_tol_qa": 0.487},
    3: {"verbmem_margin": 0.183, "knowmem_margin": 0.257, "privleak_tol": 0.373,
        "privleak_tol_bio": 2.978, "privleak_tol_qa": 0.384},
    5: {"verbmem_margin": 0.152, "knowmem_margin": 0.152, "privleak_tol": 0.267,
        "privleak_tol_bio": 0.972, "privleak_tol_qa": 0.271},
    10: {"verbmem_margin": 0.101, "knowmem_margin": 0.098, "privleak_tol": 0.208,
        "privleak_tol_bio": 0.394, "privleak_tol_qa": 0.234},
}


def noise_bars(n: int) -> dict[str, float | None]:
    """The noise bars for a forget set of `n` items (VerbMem prefixes: one per forgotten person or text):
    those calibrated at the largest size at most `n` (noise shrinks as the set grows, so a size between two
    calibrated ones gets the smaller size's, wider bars), the fold's (`DEFAULT_THRESHOLDS`) from
    `CALIBRATED_SIZE` on. With `n` below every calibrated size, the smallest size's bars. Returns {name: bar}
    over `NOISE_BARS` (None: no bar, the criterion is reported and not gated) and "bars_size"."""
    sizes = {**SIZE_BARS, CALIBRATED_SIZE: {k: DEFAULT_THRESHOLDS[k] for k in NOISE_BARS}}
    below = [k for k in sizes if k <= n]
    size = max(below) if below else min(sizes)
    return {**sizes[size], "bars_size": size}


class ScriptTokenizer:
    """ROUGE's tokens in any script: lower-cased runs of letters, digits and combining marks (Unicode
    categories L, N, M), everything else a separator; each Han ideograph and kana is a token of its own,
    since those scripts do not separate words with spaces (as multilingual ROUGE and BLEU tokenizers
    split them). Text is NFC-normalised first, so "ö" typed as one code point or as "o" + U+0308 is the
    same letter. On ASCII text the tokens are exactly rouge-score's default tokenizer's without a stemmer
    (lower-case, runs of [a-z0-9]); that tokenizer drops every other letter, so under it "Malmö" against
    "Malmo" reads 0.0 ("malm" ≠ "malmo"), "Ørsted" against "rsted" 1.0, and "北京市" against itself 0.0
    (no tokens on either side)."""

    _CJK = re.compile("([\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
                      "\uff66-\uff9f\U00020000-\U0003134f])")

    def tokenize(self, text: str) -> list[str]:
        text = self._CJK.sub(r" \1 ", unicodedata.normalize("NFC", text).lower())
        kept = "".join(ch if unicodedata.category(ch)[0] in "LNM" else " " for ch in text)
        return kept.split()


_scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False, tokenizer=ScriptTokenizer())


# ---------------------------------------------------------------------------------------------
# Metric primitives (checked on hand-made cases in tests/test_muse.py)

def rouge_l_f1(reference: str, prediction: str) -> float:
    return float(_scorer.score(reference, prediction)["rougeL"].fmeasure)


def rouge_l_f1_many(references: Sequence[str], predictions: Sequence[str]) -> np.ndarray:
    return np.array([rouge_l_f1(r, p) for r, p in zip(references, predictions, strict=True)], dtype=np.float64)


def cut_answer(text: str) -> str:
    """MUSE's KnowMem post-processing: keep the text before the first stop string."""
    for stop in KNOWMEM_STOPS:
        text = text.split(stop)[0]
    return text.strip()


def min_k_logprob(token_logprobs: np.ndarray, k: float = K_FRACTION) -> float:
    """Mean of the lowest ⌊k·n⌋ token log-probabilities (at least one): high for text the model knows."""
    lp = np.sort(np.asarray(token_logprobs, dtype=np.float64))
    n = max(1, int(k * len(lp)))
    return float(lp[:n].mean())


def privleak_auc(forget_scores: np.ndarray, holdout_scores: np.ndarray) -> float:
    """MUSE's `forget_holdout_Min-40%` AUC: P(a holdout document scores higher than a forget one).
    Forget documents are labelled 0, holdout 1, the score is the Min-K% log-probability."""
    labels = np.r_[np.zeros(len(forget_scores)), np.ones(len(holdout_scores))]
    return float(roc_auc_score(labels, np.r_[forget_scores, holdout_scores]))


PRIVLEAK_EPS = 1e-10  # open-unlearning's guard: a retrain whose AUC is 0 still gives a (huge) finite PrivLeak


def privleak(auc: float, auc_retrain: float) -> float:
    """(AUC − AUC_retrain) / AUC_retrain: ≈ 0 good, < 0 under-unlearned, > 0 over-unlearned. A retrain AUC
    of 0 (it tells every forget document from every holdout one) divides by `PRIVLEAK_EPS` instead: 0 when
    the candidate's AUC is 0 too, far outside any tolerance otherwise (`privleak_note` says why)."""
    return (auc - auc_retrain) / max(auc_retrain, PRIVLEAK_EPS)


def privleak_note(auc_retrain: float) -> str:
    """What a criterion's detail adds when PrivLeak's denominator is 0 (empty otherwise)."""
    if auc_retrain > 0:
        return ""
    return ("; the retrain's AUC is 0 (it ranks every forget document above every holdout one, e.g. the "
            "documents differ in kind), so the ratio is undefined: it is divided by 1e-10 instead, as "
            "open-unlearning does, and passes only where the candidate's AUC is 0 too")


def bootstrap_ci(values: np.ndarray, *, n_boot: int = 1000, seed: int = 0,
                 stat: Callable[[np.ndarray], float] = np.mean) -> tuple[float, float]:
    """Percentile-bootstrap 95% interval of `stat` over the items of `values`."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    stats = np.array([stat(values[i]) for i in idx])
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def privleak_ci(cand_forget: np.ndarray, cand_holdout: np.ndarray, ref_forget: np.ndarray,
                ref_holdout: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Bootstrap over documents, forget and holdout resampled separately, the same resample for both
    models, so the interval covers the sampling noise of the documents, not of one model alone."""
    rng = np.random.default_rng(seed)
    nf, nh = len(cand_forget), len(cand_holdout)
    vals = []
    for _ in range(n_boot):
        f, h = rng.integers(0, nf, nf), rng.integers(0, nh, nh)
        vals.append(privleak(privleak_auc(cand_forget[f], cand_holdout[h]),
                             privleak_auc(ref_forget[f], ref_holdout[h])))
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


# ---------------------------------------------------------------------------------------------
# Evaluating one model

@dataclass
class MuseData:
    """Texts the criteria read, independent of where they came from."""

    verbmem_prompts: list[str]  # forget-set prefixes
    verbmem_truths: list[str]  # their true continuations
    knowmem_forget: list[tuple[str, str]]  # (question, answer)
    knowmem_retain: list[tuple[str, str]]
    icl: str  # few-shot examples, already formatted, put before every question
    privleak_forget: list[str]  # whole forget documents, raw (scored with BOS only)
    privleak_holdout: list[str]  # whole never-trained documents, raw
    qa_prompt: Callable[[str], str] = field(default=lambda q: f"Question: {q}\nAnswer:")
    # the kind of each PrivLeak document ("bio", "qa"), in order; empty: one kind, C3 pooled only
    privleak_forget_kinds: list[str] = field(default_factory=list)
    privleak_holdout_kinds: list[str] = field(default_factory=list)


@dataclass
class MuseScores:
    """Per-item scores of one model; everything the gate and the report need."""

    verbmem: np.ndarray
    knowmem_forget: np.ndarray
    knowmem_retain: np.ndarray
    mink_forget: np.ndarray
    mink_holdout: np.ndarray
    examples: dict[str, list[str]] = field(default_factory=dict)
    kinds_forget: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=str))  # of each mink_forget
    kinds_holdout: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=str))

    def kinds(self) -> list[str]:
        """The document kinds C3 is gated on alone: those with forget and holdout documents both."""
        if len(self.kinds_forget) != len(self.mink_forget) or len(self.kinds_holdout) != len(self.mink_holdout):
            return []
        return sorted(set(self.kinds_forget.tolist()) & set(self.kinds_holdout.tolist()))

    def mink(self, kind: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Min-K% scores (forget, holdout) of the documents of `kind`, or of all of them (None)."""
        if kind is None:
            return self.mink_forget, self.mink_holdout
        return self.mink_forget[self.kinds_forget == kind], self.mink_holdout[self.kinds_holdout == kind]

    ARRAYS = ("verbmem", "knowmem_forget", "knowmem_retain", "mink_forget", "mink_holdout", "kinds_forget",
              "kinds_holdout")

    def to_dict(self) -> dict[str, list]:
        """The per-item scores as JSON-ready lists (examples left out), for `from_dict`."""
        return {k: getattr(self, k).tolist() for k in self.ARRAYS}

    @classmethod
    def from_dict(cls, d: dict[str, list]) -> MuseScores:
        return cls(**{k: np.array(d[k], dtype=str if k.startswith("kinds") else np.float64) for k in cls.ARRAYS})

    def summary(self) -> dict[str, float]:
        def mean(x: np.ndarray) -> float | None:  # None: the part was not scored (no such texts)
            return float(x.mean()) if len(x) else None

        return {"verbmem": mean(self.verbmem), "knowmem_forget": mean(self.knowmem_forget),
                "knowmem_retain": mean(self.knowmem_retain),
                "auc": privleak_auc(self.mink_forget, self.mink_holdout),
                **{f"auc_{k}": privleak_auc(*self.mink(k)) for k in self.kinds()}}


class LanguageModel:
    """What the criteria need from a model: greedy continuations and per-token log-probabilities."""

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]: ...

    def token_logprobs(self, texts: Sequence[str]) -> list[np.ndarray]: ...


def knowmem(lm: LanguageModel, qa: Sequence[tuple[str, str]], icl: str,
            qa_prompt: Callable[[str], str]) -> tuple[np.ndarray, list[str]]:
    answers = [cut_answer(a) for a in lm.generate([icl + qa_prompt(q) for q, _ in qa], KNOWMEM_NEW_TOKENS)]
    return rouge_l_f1_many([a for _, a in qa], answers), answers


def score_model(lm: LanguageModel, data: MuseData, parts: Sequence[str] = ("verbmem", "knowmem_forget",
                "knowmem_retain", "privleak")) -> MuseScores:
    empty = np.zeros(0)
    verb = know_f = know_r = mink_f = mink_h = empty
    examples: dict[str, list[str]] = {}
    if "verbmem" in parts:
        outs = lm.generate(data.verbmem_prompts, VERBMEM_NEW_TOKENS)
        verb = rouge_l_f1_many(data.verbmem_truths, outs)
        examples["verbmem"] = outs[:3]
    if "knowmem_forget" in parts:
        know_f, outs = knowmem(lm, data.knowmem_forget, data.icl, data.qa_prompt)
        examples["knowmem_forget"] = outs[:5]
    if "knowmem_retain" in parts:
        know_r, outs = knowmem(lm, data.knowmem_retain, data.icl, data.qa_prompt)
        examples["knowmem_retain"] = outs[:5]
    if "privleak" in parts:
        mink_f = np.array([min_k_logprob(lp) for lp in lm.token_logprobs(data.privleak_forget)])
        mink_h = np.array([min_k_logprob(lp) for lp in lm.token_logprobs(data.privleak_holdout)])
    return MuseScores(verb, know_f, know_r, mink_f, mink_h, examples,
                      kinds_forget=np.array(data.privleak_forget_kinds, dtype=str),
                      kinds_holdout=np.array(data.privleak_holdout_kinds, dtype=str))


# ---------------------------------------------------------------------------------------------
# The gate

def privleak_criterion(cand: MuseScores, ref: MuseScores, th: dict[str, float], kind: str | None = None, *,
                       source: str = "") -> Criterion:
    """C3 on the documents of `kind` (None: all of them), gated at `privleak_tol_<kind>` (or `privleak_tol`);
    `source` (optional) says where that tolerance comes from, in the row's detail."""
    (cf, ch), (rf, rh) = cand.mink(kind), ref.mink(kind)
    auc_c, auc_r = privleak_auc(cf, ch), privleak_auc(rf, rh)
    key = "privleak_tol" if kind is None or f"privleak_tol_{kind}" not in th else f"privleak_tol_{kind}"
    tol = th[key]
    docs = "every document" if kind is None else f"{kind} documents only ({len(cf)} forget, {len(ch)} holdout)"
    name, value = "privleak" if kind is None else f"privleak_{kind}", privleak(auc_c, auc_r)
    ci = privleak_ci(cf, ch, rf, rh, n_boot=int(th["n_boot_privleak"]), seed=int(th["seed"]))
    detail = (f"C3 PrivLeak on {docs}: Min-{K_FRACTION:.0%} Prob AUC forget vs holdout {auc_c:.3f}, "
              f"retrain {auc_r:.3f}; (AUC − AUC_retrain)/AUC_retrain{privleak_note(auc_r)}")
    if tol is None:  # no bar at this size (`noise_bars`): shown, not part of the verdict
        return Criterion(name=name, value=float(value), threshold=None, op="within", passed=True,
                         reference=0.0, ci=ci, gated=False,
                         detail=f"{detail}; not gated: {source or 'no bar is set'}")
    return criterion(name, value, "within", tol, reference=0.0, ci=ci,
                     detail=detail + (f"; tolerance {tol:.3f}: {source}" if source else ""))


def gate(cand: MuseScores, ref: MuseScores, thresholds: dict[str, float] | None = None, *,
         knowmem_na: str | None = None, bars_from: str = "the people world's LM") -> Verdict:
    """C1–C4 of `cand` against the retrain reference `ref`, with C3 also per document kind where the
    scores carry kinds. Bars: `thresholds` where they set one, else the noise bars for the forget set's size
    (`noise_bars`), else `DEFAULT_THRESHOLDS`. `knowmem_na`: the reason C2 and C4 cannot be computed (data
    without question–answer pairs); they are then reported as not applicable, not gated. `bars_from`: the
    model whose exact retrains measured the noise bars, as each criterion's detail names it."""
    th = {**DEFAULT_THRESHOLDS, **noise_bars(len(cand.verbmem)), **(thresholds or {})}
    boot = {"n_boot": int(th["n_boot"]), "seed": int(th["seed"])}

    def source(key: str) -> str:
        if key in (thresholds or {}):
            return "the bar set for this model or request"
        if th.get(key, 0.0) is None:
            return (f"on forget sets of {th['bars_size']} the exact retrains of other seeds of {bars_from} set no "
                    f"bar (a subset's reference AUC is 0, so the ratio is undefined; this one: {len(cand.verbmem)})")
        return (f"the bound between exact retrains of other seeds of {bars_from}, calibrated on forget sets of "
                f"{th['bars_size']} (this one: {len(cand.verbmem)})")

    rows: list[Criterion] = []
    for name, margin, what in (("verbmem", "verbmem_margin", "C1 VerbMem: ROUGE-L F1 of the greedy continuation "
                                "of forget prefixes"),
                               ("knowmem_forget", "knowmem_margin", "C2 KnowMem on forget: ROUGE-L F1 of "
                                "few-shot answers")):
        if name == "knowmem_forget" and knowmem_na is not None:
            rows.append(not_applicable(name, knowmem_na))
            continue
        c, r = getattr(cand, name), float(getattr(ref, name).mean())
        rows.append(criterion(name, c.mean(), "<=", r + th[margin], reference=r, ci=bootstrap_ci(c, **boot),
                              detail=f"{what}; at most the retrain reference's {r:.3f} + {th[margin]:.3f}, "
                                     f"{source(margin)}"))
    rows.append(privleak_criterion(cand, ref, th, source=source("privleak_tol")))
    rows += [privleak_criterion(cand, ref, th, kind, source=source(f"privleak_tol_{kind}"))
             for kind in cand.kinds() if kind in ref.kinds()]
    if knowmem_na is not None:
        rows.append(not_applicable("knowmem_retain", knowmem_na))
    else:
        kr_c, kr_r = cand.knowmem_retain.mean(), ref.knowmem_retain.mean()
        rows.append(criterion("knowmem_retain", kr_c, ">=", th["utility_frac"] * kr_r, reference=float(kr_r),
                              ci=bootstrap_ci(cand.knowmem_retain, **boot),
                              detail=f"C4 UtilityPreserve: KnowMem on retain; at least {th['utility_frac']:.0%} "
                                     "of the retrain reference's"))
    info = {"auc": privleak_auc(cand.mink_forget, cand.mink_holdout),
            "auc_retrain": privleak_auc(ref.mink_forget, ref.mink_holdout),
            **{f"auc_{k}": privleak_auc(*cand.mink(k)) for k in cand.kinds()},
            "reference": ref.summary(),
            "n": {"verbmem": len(cand.verbmem), "knowmem_forget": len(cand.knowmem_forget),
                  "knowmem_retain": len(cand.knowmem_retain), "privleak_forget": len(cand.mink_forget),
                  "privleak_holdout": len(cand.mink_holdout)},
            "examples": cand.examples, "thresholds": th}
    return Verdict(criteria=rows, info=info)


def write_report(verdict: Verdict, report_dir: Path, name: str = "muse_report") -> Path:
    """The verdict as JSON next to a bar chart of C1–C4 against the reference."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    png = report_dir / f"{name}.png"
    _plot_criteria(verdict, png)
    verdict.plots[name] = str(png)
    path = report_dir / f"{name}.json"
    path.write_text(json.dumps(verdict.to_dict(), indent=2, default=float))
    return path


# ---------------------------------------------------------------------------------------------
# C5 and C6: curves over runs of a method

Unlearner = Callable[[Path, list[str], Path], dict[str, Any]]  # (base_dir, forget_ids, out_dir) -> facts
Scorer = Callable[[Path, list[str]], dict[str, float]]  # (model_dir, forget_ids) -> {"knowmem_retain": …}


def scalability(unlearn: Unlearner, score: Scorer, base_dir: Path, nested: Sequence[list[str]],
                work_dir: Path) -> list[dict[str, Any]]:
    """C5: unlearn each nested forget set from the same base; utility and forgetting against size."""
    rows = []
    for k, forget in enumerate(nested):
        out = Path(work_dir) / f"scal-{k + 1}"
        facts = unlearn(Path(base_dir), list(forget), out)
        rows.append({"size": len(forget), **score(out, list(forget)), "facts": facts})
    return rows


def sustainability(unlearn: Unlearner, score: Scorer, base_dir: Path, folds: Sequence[list[str]],
                   work_dir: Path) -> list[dict[str, Any]]:
    """C6: request k unlearns fold k starting from request k−1's model; scores cover every fold so far."""
    rows, current, seen = [], Path(base_dir), []
    for k, fold in enumerate(folds):
        out = Path(work_dir) / f"sust-{k + 1}"
        facts = unlearn(current, list(fold), out)
        seen += list(fold)
        rows.append({"request": k + 1, **score(out, list(seen)), "facts": facts})
        current = out
    return rows


def plot_curves(curves: dict[str, list[dict[str, Any]]], x: str, ys: Sequence[str], path: Path,
                title: str, reference: dict[str, float] | None = None) -> Path:
    """One panel per metric in `ys`, one line per method; dashed lines mark the reference's values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(ys), figsize=(4.2 * len(ys), 3.4), squeeze=False)
    for ax, y in zip(axes[0], ys, strict=True):
        for name, rows in curves.items():
            ax.plot([r[x] for r in rows], [r[y] for r in rows], marker="o", label=name)
        if reference and y in reference:
            ax.axhline(reference[y], color="grey", linestyle="--", label="retrain")
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def _plot_criteria(verdict: Verdict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    shown = [c for c in verdict.criteria if c.applicable]
    names = [c.name for c in shown]
    vals = [c.value for c in shown]
    errs = np.array([[c.value - c.ci[0], c.ci[1] - c.value] if c.ci else [0, 0] for c in shown]).T
    ax.bar(names, vals, yerr=np.clip(errs, 0, None), color=["tab:green" if c.passed else "tab:red"
                                                          for c in shown], capsize=4)
    ax.scatter(names, [c.reference if c.reference is not None else np.nan for c in shown],
               color="black", marker="_", s=400, label="retrain")
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.legend()
    ax.set_title("MUSE C1–C4 (green: pass)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def history_plots(history: Sequence[dict[str, Any]], report_dir: Path,
                  criteria: Sequence[str] = ("knowmem_retain", "verbmem", "knowmem_forget")) -> dict[str, str]:
    """C5 and C6 for a served model's lineage, from verdicts already stored: each row is one request,
    {"forgotten": people forgotten so far, "verdict": Verdict.to_dict()}, oldest first. C6 plots the
    criteria against the request number, C5 against the cumulative forget-set size."""
    rows = [{"request": k + 1, "size": h["forgotten"],
             **{name: c["value"] for name, c in h["verdict"]["criteria"].items()}} for k, h in enumerate(history)]
    ys = [y for y in criteria if rows and all(r.get(y) is not None for r in rows)]  # not applicable: None
    if not ys:
        return {}
    c5 = plot_curves({"served": rows}, "size", ys, Path(report_dir) / "c5_scalability.png", "C5 over this lineage")
    c6 = plot_curves({"served": rows}, "request", ys, Path(report_dir) / "c6_sustainability.png",
                     "C6 over this lineage")
    return {"c5": str(c5), "c6": str(c6)}
