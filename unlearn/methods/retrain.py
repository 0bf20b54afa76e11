"""Retrain from scratch without the forgotten data: the exact reference every method is judged by."""

from __future__ import annotations

from typing import Any

from unlearn.families import get_family
from unlearn.methods.base import MethodParams, MethodSpec, UnlearnTask


class Params(MethodParams):
    """None: the family retrains with the base model's own training settings and seed."""


def run(task: UnlearnTask) -> dict[str, Any]:
    get_family(task.family).retrain(task.base_dir, task.retain_ids, task.out_dir,
                                    device=task.device, progress=task.progress)
    return {"retained": len(task.retain_ids), "forgotten": len(task.forget_ids)}


# The forget set's labels are never read: only the retained samples are trained on.
SPEC = MethodSpec(name="retrain", families=("*",), run=run, params=Params, exact=True, is_reference=True,
                  needs_labels=False)
