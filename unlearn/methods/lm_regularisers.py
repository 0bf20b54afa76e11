"""Retain-set regularisers of MUSE's baselines, added to a forget loss on a retained batch.

- GDR (gradient descent on retain): the ordinary language-modelling loss, NLL(θ; D_retain).
- KLR (KL on retain): KL(π_ref ‖ π_θ) of next-token distributions on retained text, token-averaged,
  π_ref being the model before unlearning (`F.kl_div` with the reference as target, as MUSE's code).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from unlearn.models.tiny_lm import token_logprobs_batch

Batch = dict[str, torch.Tensor]
Regulariser = Callable[[torch.nn.Module, torch.nn.Module | None, Batch], torch.Tensor]


def mean_token_nll(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    lp = token_logprobs_batch(model, batch)
    return -lp.sum() / batch.get("loss_mask", batch["attention_mask"])[:, 1:].sum()


def gdr(model: torch.nn.Module, reference: torch.nn.Module | None, batch: Batch) -> torch.Tensor:
    return mean_token_nll(model, batch)


def klr(model: torch.nn.Module, reference: torch.nn.Module | None, batch: Batch) -> torch.Tensor:
    assert reference is not None, "KLR needs the model before unlearning"
    mask = batch["attention_mask"].bool()
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    logp = torch.log_softmax(model(**inputs).logits.float(), dim=-1)[mask]
    with torch.no_grad():
        logp_ref = torch.log_softmax(reference(**inputs).logits.float(), dim=-1)[mask]
    # KL(π_ref ‖ π_θ) = Σ_v π_ref(v) (log π_ref(v) − log π_θ(v)), averaged over real tokens
    return F.kl_div(logp, logp_ref, reduction="batchmean", log_target=True)


REGULARISERS: dict[str, Regulariser | None] = {"none": None, "gdr": gdr, "klr": klr}
