"""Erased Stable Diffusion, ESD (Gandikota, Materzyńska, Fiotto-Kaufman, Bau; ICCV 2023; arXiv 2303.07345):
the baseline the SFD paper compares with on text-to-image models.

The UNet ε_θ (initialised from the teacher ε_φ) is fine-tuned so that its conditional prediction for the
concept's prompt c follows the teacher negatively guided away from it:
    L = E‖ε_θ(x_t, t, c) − [ε_φ(x_t, t, ∅) − η (ε_φ(x_t, t, c) − ε_φ(x_t, t, ∅))]‖²,   η = 1
Sampling from ε_θ at c then behaves like CFG with a negative scale: away from the concept. There is no
term for the remaining prompts (the paper has none either), so neighbouring concepts may drift.

The paper's defaults where they fit: η = 1; "ESD-u", the variant for concepts not tied to one word's
attention, trains every UNet parameter except the cross-attention ones (`attn2`). Changed for the tiny
16×16 pipeline, with the reason: x_t is a noised sample of the teacher's own DDIM generations for the
forget prompts (a pool drawn once), not the model's partial DDIM trajectory redrawn every step, since
re-sampling 10 steps per update would cost more than the update; both read no data. Learning rate 1e-4
instead of 1e-5 and a batch of 16 prompts instead of 1, 200 steps instead of 1,000: a few hundred steps on
one CPU thread. The result keeps the teacher's multi-step sampler (10 DDIM steps with CFG).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from pydantic import Field

from unlearn.artifacts import read_meta, write_meta
from unlearn.families.diffusion import teacher_of
from unlearn.families.text_diffusion import captions_of, concept_prompts, is_text_model
from unlearn.methods.base import MethodError, MethodParams, MethodSpec, UnlearnTask
from unlearn.models.class_diffusion import SCHEDULE, alpha_sigma
from unlearn.models.text_diffusion import generate, image_shape, load_pipeline, save_pipeline


class Params(MethodParams):
    steps: int = Field(200, ge=1, le=1_000_000)
    batch_size: int = Field(16, ge=1, le=4096)
    lr: float = Field(1e-4, gt=0, le=1)
    eta: float = Field(1.0, ge=0, le=100)  # negative guidance η
    pool_per_prompt: int = Field(8, ge=1, le=10_000)  # teacher generations per forget prompt
    train_cross_attention: bool = False  # False: ESD-u (non-cross-attention weights); True: ESD-x (only those)
    seed: int = Field(0, ge=0, le=2**32 - 1)


def run(task: UnlearnTask) -> dict[str, Any]:
    p = SPEC.parse_params(task.params)
    if not is_text_model(task.base_dir) or task.scope.type != "concept":
        raise MethodError("ESD erases a concept from a text-to-image model: send a concept scope for one")
    base_meta = read_meta(task.base_dir)
    if base_meta.get("sampler", "multistep") != "multistep":
        raise MethodError("ESD fine-tunes a multi-step (score) model, not a one-step generator")
    try:
        prompts = concept_prompts(captions_of(task.base_dir), task.scope)
    except ValueError as exc:
        raise MethodError(str(exc)) from None
    dev = task.device
    pipe = load_pipeline(task.base_dir, dev)
    teacher, scheduler = pipe.unet, pipe.scheduler
    started = time.perf_counter()
    task.progress(0.0, "sampling the teacher's pool of forget-prompt images")
    listed = [f for f in prompts.forget_prompts for _ in range(p.pool_per_prompt)]
    pool = torch.as_tensor(generate(pipe, listed, seed=p.seed), device=dev).view(-1, *image_shape(teacher)) * 2 - 1
    with torch.no_grad():
        e_forget, e_null = pipe.encode(listed), pipe.encode([""])
    student = copy.deepcopy(teacher).train().requires_grad_(False)
    trained = [q for name, q in student.named_parameters() if ("attn2" in name) == p.train_cross_attention]
    if not trained:
        raise MethodError("the UNet has no parameters of the chosen ESD variant")
    for q in trained:
        q.requires_grad_(True)
    opt = torch.optim.Adam(trained, lr=p.lr)
    B, gen = p.batch_size, torch.Generator().manual_seed(p.seed)
    loss = torch.zeros(())
    for step in range(p.steps):
        i = torch.randint(len(pool), (B,), generator=gen).to(dev)
        t = torch.randint(SCHEDULE["num_train_timesteps"], (B,), generator=gen).to(dev)
        eps = torch.randn(pool[i].shape, generator=gen).to(dev)
        a, b = alpha_sigma(scheduler, t)
        x_t, c, null = a * pool[i] + b * eps, e_forget[i], e_null.expand(B, -1, -1)
        with torch.no_grad():
            e_c, e_u = teacher(torch.cat([x_t, x_t]), torch.cat([t, t]),
                               encoder_hidden_states=torch.cat([c, null])).sample.chunk(2)
            target = e_u - p.eta * (e_c - e_u)
        loss = (student(x_t, t, encoder_hidden_states=c).sample - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % 10 == 0 or step + 1 == p.steps:
            task.progress((step + 1) / p.steps, f"ESD step {step + 1}/{p.steps} loss {loss.item():.4f}")
    seconds = time.perf_counter() - started

    save_pipeline(pipe, task.out_dir, unet=student.eval(), sampler="multistep")
    meta = {k: v for k, v in base_meta.items() if k not in ("retrained",)}
    meta.update({"sampler": "multistep", "teacher_dir": str(teacher_of(task.base_dir).resolve()),
                 "forgotten_concepts": [*base_meta.get("forgotten_concepts", []), prompts.as_meta()],
                 "method": "esd"})
    write_meta(task.out_dir, meta)
    return {"concept": prompts.concept, "forget_prompts": len(prompts.forget_prompts), "params": p.model_dump(),
            "seconds": round(seconds, 2), "final_loss": loss.item(), "data_free": True}


SPEC = MethodSpec(name="esd", families=("diffusion",), run=run, params=Params, needs_labels=False)
