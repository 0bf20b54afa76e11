"""What SFD's class-conditional and text-conditional forms (Chen, Zhang, Zhou; ICLR 2025; arXiv 2409.11219)
share of score identity distillation: the two networks they train, ψ and θ, and their optimisers. The
losses stay in each form's module (`sfd`, `sfd_text`), next to the conditioning they read."""

from __future__ import annotations

import copy
from typing import Any

import torch

from unlearn.families.diffusion import load_pipeline
from unlearn.methods.base import UnlearnTask


def networks(teacher: torch.nn.Module, task: UnlearnTask, base_meta: dict[str, Any], p: Any,
             dev: torch.device | str) -> tuple[torch.nn.Module, torch.nn.Module, torch.optim.Optimizer,
                                                torch.optim.Optimizer]:
    """ψ (the fake score network, from the teacher) and θ (the generator) in training, with their Adam
    optimisers (`p`: lr_fake, lr_generator, beta1, beta2, seed). A one-step base continues from its own
    generator; a multi-step base starts the generator from the teacher."""
    torch.manual_seed(p.seed)
    fake = copy.deepcopy(teacher).train().requires_grad_(True)
    generator = (load_pipeline(task.base_dir, dev).unet if base_meta.get("sampler") == "onestep"
                 else copy.deepcopy(teacher)).train().requires_grad_(True)
    betas = (p.beta1, p.beta2)
    opt_fake = torch.optim.Adam(fake.parameters(), lr=p.lr_fake, betas=betas, eps=1e-8)
    opt_gen = torch.optim.Adam(generator.parameters(), lr=p.lr_generator, betas=betas, eps=1e-8)
    return fake, generator, opt_fake, opt_gen
