"""The holdout gate: verifying a candidate where no retrain is feasible (reference policy "holdout").

A model too large to retrain has no exact reference. What it does have is records it never trained
on (the holdout) and the original model. A candidate has forgotten the forget set when the forget set
looks, to the candidate, like records it never saw:

- membership: the AUC of "forget record vs holdout record" from a per-record familiarity score
  (minus the loss, say) is 0.5 for a model that never saw either; the gate asks the AUC's bootstrap
  interval to come within `holdout_auc_tol` of 0.5 (MUSE's PrivLeak with the holdout standing in for
  the retrain's view of the forget set; MUSE §3, criterion C3). An AUC far *below* 0.5 fails as well:
  forgotten records that look less familiar than never-seen ones are themselves a membership signal.
- memorisation: the candidate's score on the forget set (accuracy, verbatim ROUGE) is at most what the
  ORIGINAL model scores on the holdout, plus `holdout_mem_margin` (MUSE's C1/C2 with the holdout as
  the never-trained baseline).
- utility: the candidate keeps at least `holdout_utility_frac` of the original's utility (C4).

The thresholds are gates like any other (family defaults, overridable per deployment and per model),
and every criterion states the numbers it compared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

from unlearn.verify.verdict import Criterion, criterion

GATE_DEFAULTS: dict[str, float] = {"holdout_auc_tol": 0.1, "holdout_mem_margin": 0.05, "holdout_utility_frac": 0.8}


def _auc(forget: np.ndarray, holdout: np.ndarray, axis: int = -1) -> np.ndarray:
    """P(forget score > holdout score) + ½ P(tie): the Mann–Whitney U over n_f·n_h, from mid-ranks
    (vectorised on `axis`, as `scipy.stats.bootstrap` calls it)."""
    f = np.moveaxis(np.asarray(forget, dtype=np.float64), axis, -1)
    h = np.moveaxis(np.asarray(holdout, dtype=np.float64), axis, -1)
    n_f, n_h = f.shape[-1], h.shape[-1]
    ranks = stats.rankdata(np.concatenate([f, h], axis=-1), axis=-1)
    return (ranks[..., :n_f].sum(axis=-1) - n_f * (n_f + 1) / 2) / (n_f * n_h)


def membership_auc(forget_scores: Sequence[float], holdout_scores: Sequence[float], *, confidence: float = 0.95,
                   seed: int = 0, n_resamples: int = 2000) -> tuple[float, float, float]:
    """AUC of telling forget records from holdout records by their score (higher = more member-like),
    with a percentile bootstrap interval resampling both sets (`scipy.stats.bootstrap`).

    Returns (auc, low, high), each in [0, 1]. One score per record, or per subject where a subject's
    records are not independent. Raises ValueError when either set is empty or a score is not finite."""
    f = np.asarray(forget_scores, dtype=np.float64)
    h = np.asarray(holdout_scores, dtype=np.float64)
    if f.size == 0 or h.size == 0:
        raise ValueError("membership AUC needs at least one forget and one holdout score")
    if not (np.isfinite(f).all() and np.isfinite(h).all()):
        raise ValueError("membership scores must be finite")
    auc = float(_auc(f, h))
    if f.size < 2 and h.size < 2:
        return auc, auc, auc
    # A set of one score cannot be resampled: the interval then comes from the other set alone.
    if f.size < 2 or h.size < 2:
        fixed, other, first = (f, h, True) if f.size < 2 else (h, f, False)

        def statistic(x: np.ndarray, axis: int = -1) -> np.ndarray:
            one = np.broadcast_to(fixed, (*np.moveaxis(x, axis, -1).shape[:-1], 1))
            return _auc(one, x, axis=-1) if first else _auc(x, one, axis=-1)

        data, fn = (other,), statistic
    else:
        data, fn = (f, h), _auc
    res = stats.bootstrap(data, fn, paired=False, vectorized=True, confidence_level=confidence,
                          n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    lo = auc if not np.isfinite(lo) else float(lo)
    hi = auc if not np.isfinite(hi) else float(hi)
    return auc, min(lo, auc), max(hi, auc)


def mia_criterion(forget_scores: Sequence[float], holdout_scores: Sequence[float], thresholds: Mapping[str, float],
                  *, seed: int = 0) -> Criterion:
    """`holdout_mia_auc`: the membership AUC's interval must come within `holdout_auc_tol` of 0.5; its
    value is the interval's distance from 0.5 (0 when it holds 0.5). Scores: higher = more member-like."""
    tol = float({**GATE_DEFAULTS, **thresholds}["holdout_auc_tol"])
    auc, lo, hi = membership_auc(forget_scores, holdout_scores, seed=seed)
    distance = max(lo - 0.5, 0.5 - hi, 0.0)
    return Criterion(name="holdout_mia_auc", value=distance, threshold=tol, op="<=", passed=distance <= tol,
                     reference=0.5, ci=(lo, hi),
                     detail=f"membership AUC forget vs holdout {auc:.3f} [{lo:.3f}, {hi:.3f}] over "
                            f"{len(forget_scores)} forget and {len(holdout_scores)} holdout scores; value is the "
                            "interval's distance from 0.5")


def memorisation_bar(holdout_metric: float, margin: float, forget_count: int | None = None,
                     alpha: float = 0.05) -> float:
    """The most a model that never saw the forget set may score on it.

    Without `forget_count`: `holdout_metric + margin`. With it (the metric is a rate of successes over
    `forget_count` independent records, an accuracy), the bar is at least the rate that a never-seen set
    of that size exceeds with probability `alpha` when each record succeeds with probability
    `holdout_metric`: the (1 − alpha) binomial quantile over `forget_count` (`scipy.stats.binom.ppf`).
    A fixed margin alone refuses exact retrains of small forget sets: 2 records a never-trained model gets
    right with p = 0.82 are both right 67% of the time, a rate of 1.0."""
    bar = holdout_metric + margin
    if forget_count:
        p = min(max(holdout_metric, 0.0), 1.0)
        bar = max(bar, float(stats.binom.ppf(1 - alpha, forget_count, p)) / forget_count)
    return bar


def holdout_criteria(*, forget_scores: Sequence[float], holdout_scores: Sequence[float], forget_metric: float,
                     holdout_metric: float, utility: float, utility_original: float,
                     thresholds: Mapping[str, float], metric_name: str = "memorisation",
                     utility_name: str = "utility", seed: int = 0, forget_count: int | None = None,
                     holdout_metric_upper: float | None = None) -> list[Criterion]:
    """The three criteria of the holdout gate, named `holdout_mia_auc`, `holdout_<metric_name>` and
    `holdout_<utility_name>`.

    forget_scores / holdout_scores: per-record (or per-subject) familiarity of the candidate, higher =
    more member-like. forget_metric: the candidate's memorisation score on the forget set (higher = more
    remembered, e.g. accuracy or verbatim ROUGE); holdout_metric: the ORIGINAL model's on the holdout.
    utility / utility_original: positive, higher is better (accuracy, ROUGE, the per-token likelihood
    exp(−mean NLL)), since the gate keeps a fraction of it. thresholds: the gates in force (`GATE_DEFAULTS`
    fill gaps). The memorisation bar: `holdout_metric` + the margin, raised where the forget set is small
    and its score therefore noisy: with `forget_count` (the number of records `forget_metric` is a success
    rate over, an accuracy), to the binomial bound of `memorisation_bar`; with `holdout_metric_upper` (an
    upper confidence bound of what a never-seen set of the forget set's size scores under the original,
    `never_seen_upper`, for a continuous metric such as ROUGE), to that bound + the margin. Raises
    ValueError for a non-positive `utility_original` or empty score sets."""
    if not utility_original > 0:
        raise ValueError(f"the original's {utility_name} must be positive to keep a fraction of it, "
                         f"not {utility_original!r}")
    g = {**GATE_DEFAULTS, **thresholds}
    mia = mia_criterion(forget_scores, holdout_scores, g, seed=seed)
    bar = memorisation_bar(holdout_metric, g["holdout_mem_margin"], forget_count)
    why = ""
    if forget_count:
        why = f", or the 95% binomial bound of a never-seen set of {forget_count} records where that is higher"
    if holdout_metric_upper is not None:
        bar = max(bar, holdout_metric_upper + g["holdout_mem_margin"])
        why = f", or the upper 95% bound for a never-seen set of this size ({holdout_metric_upper:.4g}) + the margin"
    mem = criterion(f"holdout_{metric_name}", forget_metric, "<=", bar, reference=holdout_metric,
                    detail=f"the candidate's {metric_name} on the forget set against the original's on the holdout "
                           f"({holdout_metric:.4g}) + {g['holdout_mem_margin']:.4g}{why}")
    keep = g["holdout_utility_frac"] * utility_original
    util = criterion(f"holdout_{utility_name}", utility, ">=", keep, reference=utility_original,
                     detail=f"at least {g['holdout_utility_frac']:.0%} of the original's {utility_name} "
                            f"({utility_original:.4g})")
    return [mia, mem, util]


def never_seen_upper(holdout_values: Sequence[float], n: int, *, n_boot: int = 1000, seed: int = 0) -> float:
    """The 97.5th percentile of the mean of `n` values drawn with replacement from `holdout_values` (float64):
    what a set of `n` never-seen records scores at most, 95% two-sided, under the model that scored the
    holdout. A forget set of a few records has a noisy mean; comparing it with the holdout's mean alone
    fails exact retrains on that noise (MUSE's C1/C2 gate likewise reads the upper end of the reference's
    95% interval). Raises ValueError for no values or n < 1."""
    values = np.asarray(holdout_values, dtype=np.float64)
    if values.size == 0 or n < 1:
        raise ValueError("the never-seen bound needs holdout values and a set size of at least 1")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_boot, n))].mean(axis=1)
    return float(np.percentile(means, 97.5))


__all__ = ["GATE_DEFAULTS", "holdout_criteria", "membership_auc", "memorisation_bar", "mia_criterion",
           "never_seen_upper"]
