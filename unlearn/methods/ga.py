"""Gradient ascent (GA) and its MUSE variants GA+GDR and GA+KLR.

GA maximises the language-modelling loss on the forget set, i.e. minimises
    L_GA(θ) = −E_{x ∈ D_forget} [ NLL(θ; x) ]          (MUSE §5, "GA")
token-averaged like the training loss. GDR adds NLL on retained text, KLR adds KL(π_ref ‖ π_θ)
on retained text (`lm_regularisers`). The loop, early stopping and checkpoint choice are shared
(`lm_unlearning`).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from unlearn.methods.base import MethodSpec, UnlearnTask
from unlearn.methods.lm_regularisers import mean_token_nll
from unlearn.methods.lm_unlearning import Batch, unlearn_lm

DEFAULTS: dict[str, Any] = {"lr": 1e-4}


def ga_loss(model: torch.nn.Module, reference: torch.nn.Module | None, batch: Batch,
            params: dict[str, Any]) -> torch.Tensor:
    return -mean_token_nll(model, batch)


def run(task: UnlearnTask, regulariser: str = "none") -> dict[str, Any]:
    name = "ga" if regulariser == "none" else f"ga_{regulariser}"
    return unlearn_lm(task, name, ga_loss, regulariser, DEFAULTS)


SPEC = MethodSpec(name="ga", families=("lm",), run=run,
                  description="Gradient ascent on the forgotten text (MUSE baseline GA).")
SPEC_GDR = MethodSpec(name="ga_gdr", families=("lm",), run=partial(run, regulariser="gdr"),
                      description="Gradient ascent on forgotten text + gradient descent on retained text.")
SPEC_KLR = MethodSpec(name="ga_klr", families=("lm",), run=partial(run, regulariser="klr"),
                      description="Gradient ascent on forgotten text + KL to the original model on retained text.")
