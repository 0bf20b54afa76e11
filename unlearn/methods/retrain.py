"""Retrain from scratch without the forgotten data: the exact reference every method is judged by."""

from __future__ import annotations

from typing import Any

from unlearn.families import get_family
from unlearn.methods.base import MethodSpec, UnlearnTask


def run(task: UnlearnTask) -> dict[str, Any]:
    get_family(task.family).retrain(task.base_dir, task.retain_ids, task.out_dir,
                                    device=task.device, progress=task.progress)
    return {"retained": len(task.retain_ids), "forgotten": len(task.forget_ids)}


SPEC = MethodSpec(name="retrain", families=("classifier", "diffusion", "lm"), run=run, exact=True,
                  description="Train the same architecture from scratch on the retained data.")
