"""Negative Preference Optimization (Zhang et al., 2024, arXiv 2404.05868) and MUSE's NPO+GDR, NPO+KLR.

NPO treats every forget sequence as a dispreferred answer with no preferred one (DPO without the
winner). On sequence log-probabilities relative to the model before unlearning, π_ref:
    L_NPO(θ) = −(2/β) · E_{y ∈ D_forget} [ log σ( −β · log( π_θ(y) / π_ref(y) ) ) ]      (NPO eq. 3)
with log π(y) = Σ_t log π(y_t | y_<t) over the whole sequence, not per-token logits (MUSE's code
applies it to raw logits, a known bug). As β → 0 it tends to GA; the sigmoid weight
σ(β log π_θ/π_ref) shrinks the step on sequences already forgotten, which is what slows NPO's collapse.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field

from unlearn.methods.lm_unlearning import Batch, LearningRate, LMParams, muse_baseline_specs, sequence_logprob


class Params(LMParams):
    # β = 0.01, not the paper's 0.1: log π_θ(y)/π_ref(y) sums over a whole biography (~60 tokens), and
    # σ(β · log ratio) stops the push once the ratio is ≪ −1/β; at 0.1 that is 10 nats, far short of what
    # a never-seen biography reads (benchmarks/results/muse_notes.md)
    beta: float = Field(0.01, gt=0, le=10)
    lr: LearningRate = 2e-4


def npo_loss(model: torch.nn.Module, reference: torch.nn.Module | None, batch: Batch,
             params: dict[str, Any]) -> torch.Tensor:
    beta = params["beta"]
    log_pi = sequence_logprob(model, batch)
    with torch.no_grad():
        log_ref = sequence_logprob(reference, batch)
    log_ratio = log_pi - log_ref
    return -(2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean()


npo_loss.needs_reference = True  # type: ignore[attr-defined]


SPEC, SPEC_GDR, SPEC_KLR = muse_baseline_specs("npo", npo_loss, Params)
