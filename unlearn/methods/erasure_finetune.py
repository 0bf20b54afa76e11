"""Erasure fine-tune: the baseline SFD is compared with (research note §1.7; not the SFD paper's method).

The multi-step model ε_θ (initialised from the teacher ε_φ) is fine-tuned so that its prediction
for the forgotten class follows the teacher's prediction for the override class, while every
other class keeps the teacher's:
    L = E‖ε_θ(x_t, t, c) − ε_φ(x_t, t, c)‖² + λ E‖ε_θ(x_t, t, c_f) − ε_φ(x_t, t, c_o)‖²,  c ∈ C_r
It is data-free like SFD: x_0 comes from a pool of the teacher's own DDIM samples of every class,
noised to a uniform t ∈ [0, T). The result still needs the multi-step sampler (DDIM, 50
evaluations per image) where SFD's generator needs one.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch
from pydantic import Field

from unlearn.artifacts import read_meta, write_meta
from unlearn.families.diffusion import (
    default_override,
    forgotten_class,
    forgotten_map,
    load_pipeline,
    teacher_of,
)
from unlearn.families.text_diffusion import is_text_model
from unlearn.methods.base import MethodError, MethodParams, MethodSpec, UnlearnTask
from unlearn.models.class_diffusion import SCHEDULE, alpha_sigma, generate, image_shape, save_pipeline


class Params(MethodParams):
    override: int | None = Field(None, ge=0, le=1_000_000)  # the override class c_o; None: (c + 1) mod K
    steps: int = Field(400, ge=1, le=1_000_000)
    batch_size: int = Field(64, ge=1, le=4096)  # per term
    lr: float = Field(1e-4, gt=0, le=1)
    forget_coef: float = Field(1.0, ge=0, le=1e4)  # λ
    pool_per_class: int = Field(64, ge=1, le=100_000)  # teacher samples per class in the data-free pool
    pool_inference_steps: int = Field(10, ge=1, le=1000)  # the teacher's own sampler (TEACHER_STEPS, η = 1)
    seed: int = Field(0, ge=0, le=2**32 - 1)


def run(task: UnlearnTask) -> dict[str, Any]:
    p = SPEC.parse_params(task.params)
    base_meta = read_meta(task.base_dir)
    if is_text_model(task.base_dir):
        raise MethodError("the erasure fine-tune moves a class's score; on a text-to-image model use 'esd' or 'sfd'")
    if base_meta.get("sampler", "multistep") != "multistep":
        raise MethodError("erasure fine-tuning needs a multi-step (score) model, not a one-step generator")
    try:
        c_f = forgotten_class(task.scope, task.forget_ids, base_meta["dataset"])
    except ValueError as exc:
        raise MethodError(str(exc)) from None
    dev = task.device
    pipe = load_pipeline(task.base_dir, dev)
    num_classes = pipe.unet.config.num_class_embeds
    c_o = default_override(c_f, num_classes) if p.override is None else p.override
    overrides = {**forgotten_map(task.base_dir), c_f: c_o}
    if c_o in overrides or c_o == c_f:
        raise MethodError(f"override class {c_o} is itself forgotten")
    started = time.perf_counter()

    # The base is its own teacher here; the pool is drawn from it (data-free, as SFD is).
    task.progress(0.0, "sampling the data-free pool")
    pool_labels = np.repeat(np.arange(num_classes), p.pool_per_class)
    pool = torch.as_tensor(generate(pipe, pool_labels, seed=p.seed, num_inference_steps=p.pool_inference_steps),
                           device=dev).view(-1, *image_shape(pipe.unet)) * 2 - 1
    teacher, scheduler = pipe.unet, pipe.scheduler
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    opt = torch.optim.Adam(student.parameters(), lr=p.lr)
    remaining = [k for k in range(num_classes) if k not in overrides]
    keep_rows = torch.as_tensor(np.flatnonzero(np.isin(pool_labels, remaining)), device=dev)
    pool_y = torch.as_tensor(pool_labels, device=dev)
    forget_cls = torch.tensor(sorted(overrides), device=dev)
    override_of = torch.tensor([overrides.get(k, k) for k in range(num_classes)], device=dev)
    B, gen = p.batch_size, torch.Generator().manual_seed(p.seed)

    loss = torch.zeros(())
    for step in range(p.steps):
        rows = torch.cat([keep_rows[torch.randint(len(keep_rows), (B,), generator=gen).to(dev)],
                          torch.randint(len(pool), (B,), generator=gen).to(dev)])
        c = torch.cat([pool_y[rows[:B]], forget_cls[torch.randint(len(forget_cls), (B,), generator=gen).to(dev)]])
        t = torch.randint(SCHEDULE["num_train_timesteps"], (2 * B,), generator=gen).to(dev)
        eps = torch.randn(pool[rows].shape, generator=gen).to(dev)
        a, b = alpha_sigma(scheduler, t)
        x_t = a * pool[rows] + b * eps
        with torch.no_grad():
            target = teacher(x_t, t, class_labels=override_of[c]).sample  # c_f -> c_o, others unchanged
        per_sample = (student(x_t, t, class_labels=c).sample - target).pow(2).mean(dim=(1, 2, 3))
        loss = per_sample[:B].mean() + p.forget_coef * per_sample[B:].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % 10 == 0 or step + 1 == p.steps:
            task.progress((step + 1) / p.steps, f"erasure fine-tune step {step + 1}/{p.steps} "
                          f"loss {loss.item():.4f}")
    seconds = time.perf_counter() - started

    save_pipeline(student.eval(), task.out_dir, sampler="multistep")
    meta = {k: v for k, v in base_meta.items() if k not in ("retrained",)}
    meta.update({"sampler": "multistep", "teacher_dir": str(teacher_of(task.base_dir).resolve()),
                 "forgotten": {str(k): v for k, v in overrides.items()}, "method": "erasure-finetune"})
    write_meta(task.out_dir, meta)
    return {"forgotten": c_f, "override": c_o, "params": p.model_dump(), "seconds": round(seconds, 2),
            "final_loss": loss.item(), "data_free": True}


# A request by samples forgets the one class they share: their labels are read.
SPEC = MethodSpec(name="erasure-finetune", families=("diffusion",), run=run, params=Params, needs_labels=True)
