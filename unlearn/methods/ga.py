"""Gradient ascent (GA) and its MUSE variants GA+GDR and GA+KLR.

GA maximises the language-modelling loss on the forget set, i.e. minimises
    L_GA(θ) = −E_{x ∈ D_forget} [ NLL(θ; x) ]          (MUSE §5, "GA")
token-averaged like the training loss. GDR adds NLL on retained text, KLR adds KL(π_ref ‖ π_θ)
on retained text (`lm_regularisers`). The loop, early stopping and checkpoint choice are shared
(`lm_unlearning`).
"""

from __future__ import annotations

from typing import Any

import torch

from unlearn.methods.lm_regularisers import mean_token_nll
from unlearn.methods.lm_unlearning import Batch, LMParams, muse_baseline_specs


class Params(LMParams):
    """GA's parameters: the shared loop's, with its defaults."""


def ga_loss(model: torch.nn.Module, reference: torch.nn.Module | None, batch: Batch,
            params: dict[str, Any]) -> torch.Tensor:
    return -mean_token_nll(model, batch)


SPEC, SPEC_GDR, SPEC_KLR = muse_baseline_specs("ga", ga_loss, Params)
