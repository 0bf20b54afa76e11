"""ACU, Analytic Continual Unlearning (Tang et al., arXiv:2505.12239): exact forgetting for the
`analytic` classifier (`unlearn.models.analytic`, whose notation and equations (1)–(6) this uses).

Setting: a frozen backbone with an analytic (ridge) head; deletion requests arrive one after another,
and the model after each must equal the one retrained without everything forgotten so far, without
revisiting the retained data. The update, for the coalesced batch (X_u, Y_u) of a request, is the
exact inverse of the head's learning step (4), by the Woodbury identity:
    (5)   S = I − X_u R X_uᵀ;   R′ = R + R X_uᵀ S⁻¹ X_u R;   W′ = W − R′ X_uᵀ (Y_u − X_u W)
In exact arithmetic, (5) after the closed-form fit (3) gives the same W as (3) run on the data without
the batch, for any order of learn and forget requests. One request is one rank-k update of the base
version's R and W, O(d²k + k³), and no retained sample is read.

A request is refused before R changes when it names a sample the version does not hold (the
classifier's ledger, by content and by id): forgetting twice would corrupt R without any error.

Re-anchoring. The recursion drifts; the version's drift block recommends a re-anchor once its probe
residual passes `drift_tol`, or after `reanchor_every` requests. Re-anchoring is a fresh fit on every
sample the version still holds, so it revisits historical data, which ACU exists to avoid. It is
therefore an operator decision (`reanchor`, `reanchor_artifact`) and never automatic.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unlearn.artifacts import read_meta
from unlearn.data import get_dataset
from unlearn.methods.base import MethodError, MethodParams, MethodSpec, UnlearnTask
from unlearn.models.analytic import (
    AnalyticClassifier,
    NotHeldError,
    drift_state,
    load,
    load_classifier,
    sample_keys,
    save,
)


class Params(MethodParams):
    """None: the update is determined by the base version and the forget set."""


def reanchor(clf: AnalyticClassifier, inputs: np.ndarray | torch.Tensor,
             labels: np.ndarray | torch.Tensor) -> AnalyticClassifier:
    """Operator action: recompute R and W from scratch on every sample the version holds, with no drift.

    The samples must match the ledger exactly. Re-anchoring on any other set would silently change
    what the model has learned. The lineage's forgotten ids are kept."""
    if Counter(sample_keys(inputs, labels)) != clf.ledger:
        raise MethodError("re-anchoring needs exactly the samples this version holds (its ledger); "
                          f"got a different set ({len(labels)} samples against {clf.held} held)")
    forgotten = set(clf.forgotten)
    clf.fit(inputs, labels)
    clf.forgotten = forgotten
    return clf


def reanchor_artifact(model_dir: Path, out_dir: Path, *, device: str = "cpu") -> dict[str, Any]:
    """Operator action on an artifact. It reads every train and holdout sample of the data set, keeps the
    ones the ledger holds, and fits on them. This is the one place ACU revisits historical data."""
    clf, meta = load_classifier(model_dir, device)
    data = get_dataset(meta["dataset"])
    rows = np.flatnonzero(data.split != "test")
    want = Counter(clf.ledger)
    keep = []
    for r, k in zip(rows, sample_keys(data.X[rows], data.y[rows]), strict=True):
        if want[k] > 0:
            want[k] -= 1
            keep.append(r)
    reanchor(clf, data.X[keep], data.y[keep])
    save(clf, meta, out_dir)
    return {"reanchored_on": len(keep)}


def run(task: UnlearnTask) -> dict[str, Any]:
    """One coalesced batch becomes one rank-k downdate of the base version's R and W. No retained sample is read."""
    start = time.perf_counter()
    meta = read_meta(task.base_dir)
    if meta.get("arch") != "analytic":
        raise MethodError(f"acu needs an analytic-head classifier; {task.base_dir} has arch {meta.get('arch')!r}")
    clf, meta = load_classifier(task.base_dir, task.device)
    ids = sorted(set(task.forget_ids))  # overlapping requests in one batch name a sample once
    if not ids:
        raise MethodError("nothing to forget")
    data = get_dataset(meta["dataset"])
    try:
        X, y = data.take(ids)
    except KeyError as exc:
        raise MethodError(str(exc.args[0])) from None
    task.progress(0.2, f"loaded base version; forgetting {len(ids)} samples")
    t0 = time.perf_counter()
    try:
        clf.forget(X, y, ids=ids)
    except NotHeldError as exc:  # a refusal of the request: R was left unchanged
        raise MethodError(str(exc)) from exc
    update_s = time.perf_counter() - t0
    # parent_dir: the lineage's original (the holdout gate's baseline) is reached through it
    save(clf, {**meta, "parent_dir": str(task.base_dir)}, task.out_dir)
    state = read_meta(task.out_dir)["acu"]
    task.progress(1.0, "rank-k update written")
    return {"rank": len(ids), "update_s": update_s, "total_s": time.perf_counter() - start,
            "held": clf.held, "residual_r": state["residual_r"], "residual_w": state["residual_w"],
            "requests_since_anchor": state["requests_since_anchor"],
            "reanchor_recommended": state["reanchor_recommended"]}


# (5) subtracts the forgotten samples' one-hot labels Y_u: the labels are read.
SPEC = MethodSpec(name="acu", families=("classifier",), run=run, params=Params, exact=True, needs_labels=True)

__all__ = ["SPEC", "AnalyticClassifier", "NotHeldError", "drift_state", "load", "load_classifier", "reanchor",
           "reanchor_artifact", "run"]
