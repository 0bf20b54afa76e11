"""A membership test with power: the unlearning likelihood-ratio attack (U-LiRA) in the service's setting.

Source: Hayes, Shumailov, Triantafillou, Khalifa, Papernot (2024), "Inexact unlearning needs more careful
evaluations to avoid a false sense of privacy" (arXiv:2403.01218), §4: per target sample, fit a Gaussian
to a per-sample statistic under each hypothesis and score the model under test by the likelihood ratio
(their Eq. 2, after LiRA, Carlini et al. 2022, Eq. 4). The statistic is LiRA's logit-scaled confidence
φ = log p_y − log(1 − p_y) (Carlini et al. 2022, §IV-B), here computed as log p_y − logsumexp_{j≠y} log p_j
so that it stays exact in float64 when p_y rounds to 1.

The service holds both hypotheses as models:
- "still remembers": the original (the lineage's registered version, trained on the forget set);
- "forgot": the exact retrain without the forget set, and further retrains of it with other seeds.

Per forget sample i, with φ̄_i the retrains' mean, σ² the retrains' variance pooled over the forget samples
(LiRA's fixed-variance variant, which Carlini et al. recommend with few shadow models; here there are a
handful of retrains and a single original, so a per-sample variance cannot be estimated), and
Δ_i = φ_original,i − φ̄_i:

    Λ_i = log N(φ_c,i; φ_original,i, σ²) − log N(φ_c,i; φ̄_i, σ²)
        = (Δ_i / σ²) · (φ_c,i − φ̄_i − Δ_i / 2)                                 (the ratio, equal variances)

Λ_i > 0: the candidate looks more like the original than like a retrain on sample i. The request's
statistic is the mean of Λ_i, with a bootstrap 95% interval over the forget samples. It equals
(mean Δ² / σ²) · (m − ½), where m = Σ Δ_i (φ_c,i − φ̄_i) / Σ Δ_i² is the share of the original's
displacement from the retrains that the candidate still carries (1: the original, 0: a retrain), reported
beside it. The candidate fails when the whole interval lies above 0.

A test can only tell forgetting from doing nothing where the original itself differs from the retrains
by more than retrains with other seeds differ from one another. Each retrain k is scored as a candidate
against the mean of the others (leave one out): its share m_k of the original's displacement is 0 give
or take the seed-to-seed spread, which includes any shift common to all samples of one model (the
samples of one model are not independent draws). The original's separation is 1 / RMS(m_k): how many
such spreads its own share (1) lies from a retrain's (0). Below `ulira_min_separation` the forget set was
never memorised beyond the seed-to-seed spread, the verdict says so ("indistinguishable from the retrain
before unlearning"), and the criterion does not gate; the service then lets only an exact method certify
the request (`unlearn.verification`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.special import logsumexp

from unlearn.verify.verdict import Criterion

GATE_DEFAULTS = {
    # retrains in the "forgot" hypothesis: the service's reference plus this many minus one with other seeds
    "ulira_references": 4.0,
    # the original's distance from the retrains, in seed-to-seed spreads of the memorisation share, below
    # which the request is indistinguishable: two spreads is where a Gaussian draw falls ~5% of the time
    "ulira_min_separation": 2.0,
}
INDISTINGUISHABLE = "indistinguishable from the retrain before unlearning"
# keeps Λ finite where the retrains agree to the last bit (a deterministic closed-form head); in logit units
SIGMA_FLOOR = 1e-6
# retrains whose shares agree to 1e-9 put the original a billion spreads away: distinguishable, and finite
SPREAD_FLOOR = 1e-9


def logit_confidence(logp: np.ndarray, y: np.ndarray) -> np.ndarray:
    """LiRA's statistic φ = log p_y − log Σ_{j≠y} p_j per row. `logp`: (n, classes) log-probabilities
    (float64); `y`: (n,) labels. Returns (n,) float64. Raises ValueError for fewer than two classes."""
    logp = np.asarray(logp, dtype=np.float64)
    if logp.ndim != 2 or logp.shape[1] < 2:
        raise ValueError(f"log-probabilities of shape {logp.shape}: need (n, classes >= 2)")
    rows = np.arange(len(y))
    others = logp.copy()
    others[rows, y] = -np.inf
    return logp[rows, y] - logsumexp(others, axis=1)


@dataclass(frozen=True)
class ULiRAResult:
    llr: float  # mean Λ over the forget samples (nats per sample)
    ci: tuple[float, float]  # bootstrap 95% interval of `llr`
    remembered_share: float  # m: 1 = the original, 0 = the retrains' mean
    separation: float  # 1 / RMS of the retrains' leave-one-out shares: the original's distance in their spreads
    sigma: float  # pooled retrain standard deviation of φ
    references: int  # retrains in the "forgot" hypothesis
    n: int  # forget samples
    min_separation: float  # the gate `separation` was held to
    per_sample: np.ndarray  # (n,) Λ_i

    @property
    def distinguishable(self) -> bool:
        return self.separation >= self.min_separation

    @property
    def passed(self) -> bool:
        """Not shown to be closer to the original than to the retrains; always True when indistinguishable."""
        return (not self.distinguishable) or self.ci[0] <= 0.0


def remembered_share(phi: np.ndarray, phi_original: np.ndarray, phi_forgot: np.ndarray) -> float:
    """m = Σ Δ_i (φ_i − φ̄_i) / Σ Δ_i², Δ = φ_original − φ̄ (all (n,)): the least-squares share of the
    original's displacement from `phi_forgot` that `phi` carries; 0 where the original equals `phi_forgot`
    (there is nothing to carry, and JSON columns refuse NaN)."""
    delta = phi_original - phi_forgot
    dd = float((delta**2).sum())
    return float((delta * (phi - phi_forgot)).sum() / dd) if dd > 0 else 0.0


def ulira(phi_candidate: np.ndarray, phi_original: np.ndarray, phi_references: np.ndarray, *,
          min_separation: float = GATE_DEFAULTS["ulira_min_separation"], n_resamples: int = 999,
          seed: int = 0) -> ULiRAResult:
    """Score a candidate between the original and the retrains (module docstring).

    `phi_candidate`, `phi_original`: (n,) statistic per forget sample; `phi_references`: (K, n), one row per
    retrain without the forget set, K >= 2. Returns a `ULiRAResult`. Raises ValueError for K < 2 (the
    retrains' spread is what the test is measured against) or no forget sample."""
    refs = np.asarray(phi_references, dtype=np.float64)
    c = np.asarray(phi_candidate, dtype=np.float64)
    o = np.asarray(phi_original, dtype=np.float64)
    if refs.ndim != 2 or refs.shape[0] < 2:
        raise ValueError(f"need at least two retrains, got {refs.shape[0] if refs.ndim == 2 else 0}")
    k, n = refs.shape
    if n == 0 or c.shape != (n,) or o.shape != (n,):
        raise ValueError(f"candidate {c.shape}, original {o.shape} and retrains {refs.shape} disagree or are empty")
    mean = refs.mean(axis=0)
    sigma = max(float(np.sqrt(((refs - mean) ** 2).sum() / (n * (k - 1)))), SIGMA_FLOOR)
    delta = o - mean
    per_sample = delta / sigma**2 * (c - mean - delta / 2)
    llr = float(per_sample.mean())
    if n >= 2 and np.ptp(per_sample) > 0:
        boot = stats.bootstrap((per_sample,), np.mean, confidence_level=0.95, n_resamples=n_resamples,
                               method="percentile", random_state=np.random.default_rng(seed))
        ci = (float(boot.confidence_interval.low), float(boot.confidence_interval.high))
    else:  # one sample, or all alike: the bootstrap has nothing to resample
        ci = (llr, llr)
    share = remembered_share(c, o, mean)
    loo = np.array([remembered_share(refs[j], o, np.delete(refs, j, axis=0).mean(axis=0)) for j in range(k)])
    spread = float(np.sqrt(np.mean(loo**2)))
    separation = 1.0 / max(spread, SPREAD_FLOOR)  # finite: verdicts are stored as JSON
    return ULiRAResult(llr=llr, ci=ci, remembered_share=share, separation=separation, sigma=sigma, references=k,
                       n=n, min_separation=float(min_separation), per_sample=per_sample)


def ulira_criterion(result: ULiRAResult) -> Criterion:
    """The verdict row "ulira": gated on the interval where the original is distinguishable, and shown
    ungated (threshold None) with the words `INDISTINGUISHABLE` where it is not."""
    stats_text = (f"mean log-likelihood ratio {result.llr:.3g} (95% CI {result.ci[0]:.3g} to {result.ci[1]:.3g}) "
                  f"over {result.n} forget samples; the candidate keeps {result.remembered_share:.2f} of the "
                  f"original's memorisation; {result.references} retrains; original's separation "
                  f"{result.separation:.2f} seed-to-seed spreads from a retrain's")
    if not result.distinguishable:
        return Criterion(name="ulira", value=result.llr, threshold=None, op="<=", passed=True, reference=0.0,
                         ci=result.ci, detail=f"{INDISTINGUISHABLE}: {stats_text}; the membership test has no "
                                              "power here, so only an exact method certifies the request")
    return Criterion(name="ulira", value=result.llr, threshold=0.0, op="<=", passed=result.passed, reference=0.0,
                     ci=result.ci, detail=f"U-LiRA (Hayes et al. 2024): {stats_text}; fails when the whole "
                                          "interval lies above 0 (closer to the original than to the retrains)")


def ulira_info(result: ULiRAResult) -> dict[str, object]:
    """The verdict's info keys (not gated): the statistic and, where it holds, the indistinguishability."""
    info: dict[str, object] = {
        "ulira_llr": result.llr, "ulira_ci": list(result.ci), "ulira_remembered_share": result.remembered_share,
        "ulira_separation": result.separation, "ulira_sigma": result.sigma, "ulira_references": result.references}
    if not result.distinguishable:
        info["indistinguishable"] = {"statement": INDISTINGUISHABLE, "separation": result.separation,
                                     "min_separation": result.min_separation, "references": result.references}
    return info


__all__ = ["GATE_DEFAULTS", "INDISTINGUISHABLE", "ULiRAResult", "logit_confidence", "remembered_share", "ulira", "ulira_criterion",
           "ulira_info"]
