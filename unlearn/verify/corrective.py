"""The corrective verifier: did the candidate remove a manipulation's effect without losing utility?

Corrective requests ("these samples were manipulated") are not judged against the retrain
reference as privacy requests are: retraining without the flagged samples keeps the unflagged
manipulated ones, so it is no gold standard (Goel et al., Corrective Machine Unlearning). Gates:
- the manipulation's effect, on clean test images:
    backdoor: attack success rate, the share of triggered test images (true class ≠ target)
              classified as the target;
    swap:     interclass confusion, the share of the two classes' test images classified as
              the other class of the pair;
- clean test accuracy at most `clean_acc_drop` below the ORIGINAL model's (the candidate's
  parent, `unlearn.json["parent_dir"]`).
Not gated, reported: accuracy on the affected class(es), accuracy on triggered images against
their true labels (the benchmark's Acc_corr), and the same figures for the original and for
the retrain-without-flagged reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from unlearn.data.poison import apply_trigger
from unlearn.data.tabular import TabularDataset
from unlearn.verify.verdict import Criterion, Verdict, criterion

Predictor = Callable[[np.ndarray], np.ndarray]

DEFAULT_THRESHOLDS = {"attack_success_max": 0.10, "confusion_max": 0.10, "clean_acc_drop": 0.02}


def corrective_metrics(predict: Predictor, data: TabularDataset) -> dict[str, float]:
    """The manipulation's effect and the utility figures of one model, on the clean test split."""
    ex = data.extra
    test = data.rows(data.ids_in("test"))
    y = ex["clean_y"]
    pred = predict(data.X[test]).argmax(1)
    out = {"clean_acc": float((pred == y[test]).mean())}
    if ex["manipulation"] == "backdoor":
        target = ex["target"]
        victims = test[y[test] != target]  # class-0 images would count as "correct" trivially
        triggered = predict(apply_trigger(data.X[victims], data.image_shape, ex["trigger"])).argmax(1)
        out["effect"] = float((triggered == target).mean())
        out["triggered_acc"] = float((triggered == y[victims]).mean())
        out["affected_acc"] = float((pred[y[test] == target] == target).mean())
    elif ex["manipulation"] == "swap":
        a, b = ex["classes"]
        pair = np.isin(y[test], [a, b])
        swapped = np.where(y[test][pair] == a, b, a)
        out["effect"] = float((pred[pair] == swapped).mean())
        out["affected_acc"] = float((pred[pair] == y[test][pair]).mean())
        out["other_acc"] = float((pred[~pair] == y[test][~pair]).mean())
    else:
        raise ValueError(f"no corrective verification for manipulation {ex['manipulation']!r}")
    return out


def verify_corrective(candidate: Predictor, original: Predictor, reference: Predictor, data: TabularDataset,
                      flagged_ids: Sequence[str], *, thresholds: dict[str, float] | None = None) -> Verdict:
    if "manipulation" not in data.extra:
        raise ValueError("corrective verification needs a data set that records its manipulation")
    th = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    cand, orig, ref = (corrective_metrics(p, data) for p in (candidate, original, reference))
    backdoor = data.extra["manipulation"] == "backdoor"
    name, limit = ("attack_success", th["attack_success_max"]) if backdoor else \
        ("interclass_confusion", th["confusion_max"])
    rows: list[Criterion] = [
        criterion(name, cand["effect"], "<=", limit, reference=ref["effect"],
                  detail=f"original {orig['effect']:.3f}; retrain without the flagged samples {ref['effect']:.3f}"),
        criterion("clean_acc", cand["clean_acc"], ">=", orig["clean_acc"] - th["clean_acc_drop"],
                  reference=ref["clean_acc"],
                  detail=f"clean test accuracy; original {orig['clean_acc']:.3f}, at most "
                         f"{th['clean_acc_drop']:.2f} below it"),
        Criterion("affected_class_acc", cand["affected_acc"], None, ">=", True, reference=ref["affected_acc"],
                  detail=f"test accuracy on the affected class(es); original {orig['affected_acc']:.3f}"),
    ]
    flagged = set(flagged_ids)
    manipulated = data.extra["manipulated_ids"]
    info: dict[str, Any] = {
        "manipulation": data.extra["manipulation"], "candidate": cand, "original": orig,
        "retrain_without_flagged": ref, "n_flagged": len(flagged), "n_manipulated": len(manipulated),
        "flagged_share": sum(s in flagged for s in manipulated) / max(len(manipulated), 1),
    }
    return Verdict(criteria=rows, info=info)


__all__ = ["DEFAULT_THRESHOLDS", "corrective_metrics", "verify_corrective"]
