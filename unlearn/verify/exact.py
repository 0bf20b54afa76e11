"""Checking an exact closed-form update against the statistics it must have changed, without a refit.

ACU (`unlearn.methods.acu`) keeps, beside R = (ΦᵀΦ + γI)⁻¹ and W = R·ΦᵀY, two random-probe images of
its sufficient statistics: V = (ΦᵀΦ + γI)·P and T = Pᵀ·ΦᵀY for a fixed Gaussian P (d × 4). Forgetting
the samples X_u, Y_u must change them by exactly V′ = V − X_uᵀX_u·P and T′ = T − (X_u P)ᵀY_u, and the new
R′, W′ must solve the new normal equations: R′V′ = P and V′ᵀW′ = T′ (the residuals). Together these say,
in O(k·d·4 + d²·4) and reading only the forgotten samples, that the candidate is the exact solution on
the parent's samples minus X_u, up to the probes: a wrong R′ or W′ would have to be wrong only in the
null space of 4 Gaussian directions, which has probability 0 (Freivalds' check over the reals).

So a burst of ACU jobs is verified at the cost of the update itself; the full comparison against a
retrain from scratch runs in the periodic compliance check (`unlearn.compliance`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

from unlearn.artifacts import read_meta
from unlearn.data import get_dataset
from unlearn.models.analytic import DRIFT_TOL, id_keys, load_classifier, sample_keys
from unlearn.verify.verdict import Criterion, Verdict, criterion

STATS_TOL = 1e-9  # relative: float64 sums of the same terms in another order differ by ~1e-14


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = float(torch.linalg.norm(b))
    return float(torch.linalg.norm(a - b)) / scale if scale > 0 else float(torch.linalg.norm(a - b))


def acu_update_check(candidate_dir: Path, parent_dir: Path, new_forget_ids: list[str], *,
                     device: str = "cpu") -> Verdict | None:
    """The verdict on an analytic-head candidate made from `parent_dir` by forgetting `new_forget_ids`,
    from the sufficient statistics alone (module docstring); None when the candidate is not an
    analytic-head classifier (the caller verifies it against a reference instead).

    Criteria (each gated): `update_statistics` (relative error of V′ and T′ against the parent's minus
    the forgotten samples' terms, ≤ 1e-9), `residual_r` and `residual_w` (≤ the drift tolerance),
    `ledger` (1 when the candidate holds exactly the parent's samples minus the forgotten ones, each
    recorded as forgotten by id; else 0)."""
    meta = read_meta(candidate_dir)
    if meta.get("arch") != "analytic":
        return None
    cand, _ = load_classifier(candidate_dir, device)
    parent, _ = load_classifier(parent_dir, device)
    same_basis = torch.equal(cand.buffer, parent.buffer) and torch.equal(cand.probe, parent.probe)
    X, y = get_dataset(meta["dataset"]).take(sorted(set(new_forget_ids)))
    x = cand.expand(X)
    xp = x @ parent.probe
    v_expected = parent.probe_image - x.T @ xp
    t_expected = parent.probe_target - xp.T @ cand._targets(y)
    stats = max(_rel(cand.probe_image, v_expected), _rel(cand.probe_target, t_expected)) if same_basis else float("inf")
    residual = cand.residual()
    expected_ledger = Counter(parent.ledger)
    expected_ledger.subtract(Counter(sample_keys(X, y)))
    expected_ledger = +expected_ledger  # drop the zero counts
    ledger_ok = cand.ledger == expected_ledger and set(id_keys(new_forget_ids)) <= cand.forgotten
    criteria: list[Criterion] = [
        criterion("update_statistics", stats, "<=", STATS_TOL,
                  detail="V′ and T′ against the parent's statistics minus the forgotten samples' terms"),
        criterion("residual_r", residual["r"], "<=", DRIFT_TOL, detail="‖R′V′ − P‖ / ‖P‖"),
        criterion("residual_w", residual["w"], "<=", DRIFT_TOL, detail="‖V′ᵀW′ − T′‖ / ‖T′‖"),
        criterion("ledger", 1.0 if ledger_ok else 0.0, ">=", 1.0,
                  detail="holds the parent's samples minus exactly the forgotten ones"),
    ]
    forget_acc = float((cand.predict(X).cpu().numpy() == y).mean()) if len(y) else float("nan")
    return Verdict(criteria=criteria, info={
        "check": "exact update against the parent's sufficient statistics (no refit)",
        "forgotten_now": len(set(new_forget_ids)), "held": cand.held, "parent_held": parent.held,
        "forget_acc_now": forget_acc})


__all__ = ["STATS_TOL", "acu_update_check"]
