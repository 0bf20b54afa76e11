"""The holdout gate (reference policy "holdout"): its AUC, its interval, and its power on known scores."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from unlearn.verify.holdout import GATE_DEFAULTS, holdout_criteria, membership_auc


def _gate(forget, holdout, **kw):
    args = {"forget_metric": 0.1, "holdout_metric": 0.1, "utility": 0.9, "utility_original": 1.0,
            "thresholds": {}, **kw}
    return {c.name: c for c in holdout_criteria(forget_scores=forget, holdout_scores=holdout, **args)}


def test_auc_is_the_mann_whitney_auc_with_ties():
    rng = np.random.default_rng(3)
    f, h = np.round(rng.normal(0.5, 1, 40), 1), np.round(rng.normal(0, 1, 70), 1)  # rounding makes ties
    auc, lo, hi = membership_auc(f, h)
    assert auc == pytest.approx(roc_auc_score([1] * 40 + [0] * 70, np.r_[f, h]))
    assert lo < auc < hi


def _rate(shift: float, n: int = 30, seeds: int = 20) -> int:
    """How many of `seeds` draws pass the membership criterion with forget scores shifted by `shift` sd."""
    return sum(_gate(np.random.default_rng(s).normal(shift, 1, n), np.random.default_rng(100 + s).normal(0, 1, n))
               ["holdout_mia_auc"].passed for s in range(seeds))


def test_member_like_forget_scores_fail_and_never_seen_ones_pass():
    # Never seen (no shift): the false-rejection rate the gate's tolerance buys at n = 30.
    assert _rate(0.0) >= 19
    # Remembered: the unchanged original's forget records are more familiar than the holdout. The power
    # at n = 30 grows with the shift (1.5 sd: AUC ≈ 0.85; 3 sd: AUC ≈ 0.98).
    assert _rate(1.5) <= 2
    assert _rate(3.0) == 0


def test_forget_records_less_familiar_than_never_seen_ones_fail_too():
    c = _gate(np.random.default_rng(0).normal(-1.5, 1, 30), np.random.default_rng(1).normal(0, 1, 30))
    assert not c["holdout_mia_auc"].passed and c["holdout_mia_auc"].ci[1] < 0.5 - GATE_DEFAULTS["holdout_auc_tol"]


def test_one_forget_score_is_bounded_by_the_holdout_alone():
    auc, lo, hi = membership_auc([10.0], np.random.default_rng(0).normal(0, 1, 50))
    assert (auc, lo, hi) == (1.0, 1.0, 1.0)  # above every holdout score: no resample brings it back
    assert not _gate([10.0], np.random.default_rng(0).normal(0, 1, 50))["holdout_mia_auc"].passed


def test_memorisation_and_utility_against_the_original():
    c = _gate([0.0, 1.0], [0.5, 0.2], forget_metric=0.9, holdout_metric=0.3, utility=0.7, utility_original=1.0)
    assert not c["holdout_memorisation"].passed and c["holdout_memorisation"].threshold == pytest.approx(0.35)
    assert not c["holdout_utility"].passed and c["holdout_utility"].threshold == pytest.approx(0.8)
    c = _gate([0.0, 1.0], [0.5, 0.2], forget_metric=0.32, holdout_metric=0.3, utility=0.85, utility_original=1.0,
              thresholds={"holdout_utility_frac": 0.9})
    assert c["holdout_memorisation"].passed and not c["holdout_utility"].passed


@pytest.mark.parametrize("bad", [{"forget": []}, {"forget": [float("nan")]}, {"utility_original": 0.0}])
def test_bad_inputs_are_refused(bad):
    forget = bad.pop("forget", [1.0, 2.0])
    with pytest.raises(ValueError):
        _gate(forget, [0.0, 1.0], **bad)


def test_the_memorisation_bar_allows_what_a_never_seen_set_of_that_size_scores():
    from scipy import stats

    from unlearn.verify.holdout import memorisation_bar

    assert memorisation_bar(0.82, 0.05) == pytest.approx(0.87)
    # two records a never-trained model gets right with p = 0.82 are both right 67% of the time
    assert memorisation_bar(0.82, 0.05, forget_count=2) == 1.0
    # at 1,000 records the binomial bound is tighter than the margin, which then decides
    assert memorisation_bar(0.82, 0.05, forget_count=1000) == pytest.approx(0.87)
    n, p = 100, 0.82
    bar = memorisation_bar(p, 0.05, forget_count=n)
    assert stats.binom.sf(round(bar * n), n, p) <= 0.05 < stats.binom.sf(round(bar * n) - 2, n, p)
