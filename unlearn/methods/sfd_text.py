"""Score Forgetting Distillation on a text-to-image pipeline (Chen, Zhang, Zhou; ICLR 2025; arXiv 2409.11219;
the official `SD/` code: `SD/train.py`, `SD/training/dataset.py`, `SD/run_sfd.sh`).

The algorithm is `unlearn.methods.sfd`'s with prompts for classes. The frozen teacher ε_φ (the pipeline's
UNet) is distilled into a one-step generator G_θ(z, c) = f_θ(b_init·z, t_init, c); a fake-score network ε_ψ
tracks G_θ's distribution; ψ and θ are updated alternately, ψ first (labels as the research note §1.2 and
`unlearn.methods.sfd` name them; the paper's equation numbers were not available to us):
    L_ψ = E‖ε̃_ψ(x_t, t, c) − ε‖² + λ E‖ε̃_ψ(x_t^f, t, c_f) − ε‖²                      (fake-score loss)
    L_θ = L_SiD(G_θ(z, c); c, c) + λ L_SiD(G_θ(z', c_f); c_o, c_f)                     (SFD generator loss)
with c a remaining prompt, c_f a forget prompt and c_o its override prompt: the forget prompt with the
concept replaced by the override (the code's regex replace, "brad pitt" → "a middle aged man"). In
L_SiD(x_g; c_T, c_F) the teacher is queried at c_T and the fake score at c_F, so the forget term aligns
the generator's score for c_f with the teacher's score for c_o. Denoisers use classifier-free guidance,
ε̃ = ε(x, n) + κ (ε(x, c) − ε(x, n)), the SD code's three scales: κ4 = w for the teacher, with n the
request's negative prompt in the override term (the nudity variant, `USE_NEG=0,0,1`: only the teacher takes
it) and "" otherwise; κ1 = κ2 (param `guidance_fake`) for the fake score, always against "", with 10% of
ψ's prompts dropped to "" so that its unconditional branch trains (`use_context_dropout_train_fake`).
The text encoder is frozen and shared by the three networks; only UNets train.

Defaults are the SD config's (`SD/run_sfd.sh`) where they carry over: α = 1.0, λ_ψ = λ_θ = 1.0, Adam
β = (0, 0.999), gradients clipped by value at 1, no EMA of θ. Changed for the tiny 16×16 pipeline, each
with its reason:
- t_init = 440 and t ∈ [38, 712) instead of 625 and [20, 980): SD's values are σ = 2.5 and σ ∈ [0.14, 13]
  on SD's scaled-linear schedule; the pipeline here has the linear DDPM schedule, where those σ fall at
  440 and [38, 712) (the CIFAR config's values, research note §1.1).
- guidance κ4 = w = the pipeline's own CFG scale (3.0; param `guidance`), the scale the tiny teacher was
  judged at, instead of 4.5; and κ1 = κ2 = 1 (an unguided fake score; `guidance_fake`) instead of 4.5 = w:
  measured on "triangle" → "square", 300 steps, the paper's κ1 = κ2 = w gave a remaining accuracy of 0.57×
  the teacher's and an FD ratio of 1.48, the unguided fake score 0.67× and 1.27 at half the fake's cost.
- learning rates 1e-4 (θ) and 3e-4 (ψ) instead of 1e-6 / 3e-6: SD's are for a 860M-parameter UNet and
  hundreds of thousands of images; these are the digits run's (research note §1.6), a few hundred steps.
- G_θ starts from the teacher, not from a SiD-LSG one-step generator (none exists for this teacher), so
  the remaining prompts are distilled in the same run (SFD's single-stage form, as on CIFAR-10).
- batch 16 per term, 300 steps instead of 8 per GPU and 100k images: one CPU thread.
Remaining prompts are the half of the model's non-concept captions that `concept_prompts` gives methods;
the other half is the verifier's. No image is read: the method is data-free.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from unlearn.artifacts import read_meta, write_meta
from unlearn.families.diffusion import teacher_of
from unlearn.families.text_diffusion import captions_of, concept_prompts
from unlearn.methods.base import MethodError, UnlearnTask
from unlearn.methods.sid import networks
from unlearn.models.class_diffusion import alpha_sigma
from unlearn.models.text_diffusion import (
    denoise,
    guided_eps,
    image_shape,
    load_pipeline,
    one_step,
    save_pipeline,
)

# Where the text pipeline's defaults differ from the class-conditional SFD's (module docstring); a
# parameter the request sets wins.
TEXT_DEFAULTS: dict[str, Any] = {"alpha": 1.0, "forget_coef": 1.0, "steps": 300, "batch_size": 16}
CAPTION_DROP = 0.1  # share of ψ's prompts replaced by "" when ψ is guided (`use_context_dropout_train_fake`)


def sid_loss(teacher: torch.nn.Module, fake: torch.nn.Module, scheduler, x_g: torch.Tensor, t: torch.Tensor,
             eps: torch.Tensor, e_teacher: torch.Tensor, e_neg: torch.Tensor, e_fake: torch.Tensor,
             e_null: torch.Tensor, w: float, w_fake: float, alpha: float) -> torch.Tensor:
    """Per-sample L_SiD(x_g; c_T, c_F) with guided denoisers (text embeddings e_*: (B, tokens, width)):
    the teacher's at c_T = `e_teacher` against the negative prompt `e_neg` with scale w (κ4, `USE_NEG`'s
    third flag), the fake score's at c_F = `e_fake` against "" (`e_null`) with scale w_fake (κ2; its
    negative-prompt flag is off in the SD config). θ's gradient flows through x_t into both frozen networks."""
    a, b = alpha_sigma(scheduler, t)
    x_t = a * x_g + b * eps
    f_real = denoise(teacher, scheduler, x_t, t, e_teacher, e_neg, w)
    f_fake = denoise(fake, scheduler, x_t, t, e_fake, e_null, w_fake)
    omega = (f_real - x_g).abs().mean(dim=(1, 2, 3), keepdim=True).detach().clamp_min(1e-5)
    return ((f_real - f_fake) * ((f_real - x_g) - alpha * (f_real - f_fake)) / omega).sum(dim=(1, 2, 3))


def run(task: UnlearnTask, params: Any) -> dict[str, Any]:
    """SFD on the text-to-image model at `task.base_dir` for the concept request `task.scope`; `params`:
    `unlearn.methods.sfd.Params` (its `override` class does not apply: the scope names the override)."""
    p = params.model_copy(update={k: v for k, v in TEXT_DEFAULTS.items() if k not in params.model_fields_set})
    if p.override is not None:
        raise MethodError("a text-to-image concept request names its override in the scope ('override'), "
                          "not as a class in params")
    if task.scope.type != "concept":
        raise MethodError("SFD forgets a concept on a text-to-image model: send a concept scope")
    base_meta = read_meta(task.base_dir)
    try:
        prompts = concept_prompts(captions_of(task.base_dir), task.scope)
    except ValueError as exc:
        raise MethodError(str(exc)) from None
    # earlier forgotten concepts of a one-step base stay forgotten: their forget terms are kept
    earlier = base_meta.get("forgotten_concepts", [])
    forget = [f for c in earlier for f in c["forget_prompts"]] + prompts.forget_prompts
    override = [o for c in earlier for o in c["override_prompts"]] + prompts.override_prompts
    negative = [c.get("negative_prompt", "") for c in earlier for _ in c["forget_prompts"]] + \
        [prompts.negative_prompt] * len(prompts.forget_prompts)
    forgotten_words = [c["concept"] for c in earlier] + [prompts.concept]
    remaining = [r for r in prompts.remaining_train
                 if not any(w.lower() in r.lower() for w in forgotten_words)]
    if not remaining:
        raise MethodError("no remaining prompt is left to distil")

    dev = task.device
    teacher_dir = teacher_of(task.base_dir)
    tpipe = load_pipeline(teacher_dir, dev)
    teacher, scheduler = tpipe.unet, tpipe.scheduler
    w = float(tpipe.config.guidance_scale if p.guidance is None else p.guidance)
    w_fake = float(p.guidance_fake)
    with torch.no_grad():
        e_rem, e_forget, e_override, e_neg = (tpipe.encode(x) for x in (remaining, forget, override, negative))
        e_null = tpipe.encode([""])
    fake, generator, opt_fake, opt_gen = networks(teacher, task, base_meta, p, dev)
    B, lam, shape = p.batch_size, p.forget_coef, (2 * p.batch_size, *image_shape(teacher))
    gen = torch.Generator().manual_seed(p.seed)

    def randn() -> torch.Tensor:
        return torch.randn(shape, generator=gen).to(dev)

    def draw() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c for G and ψ, teacher's c, teacher's negative, t): first half remaining, second half forget."""
        r = torch.randint(len(remaining), (B,), generator=gen).to(dev)
        f = torch.randint(len(forget), (B,), generator=gen).to(dev)
        c = torch.cat([e_rem[r], e_forget[f]])
        c_teacher = torch.cat([e_rem[r], e_override[f]])
        neg = torch.cat([e_null.expand(B, -1, -1), e_neg[f]])
        t = torch.randint(p.t_min, p.t_max, (2 * B,), generator=gen).to(dev)
        return c, c_teacher, neg, t

    def two_terms(per_sample: torch.Tensor) -> torch.Tensor:
        return per_sample[:B].mean() + lam * per_sample[B:].mean()

    started = time.perf_counter()
    loss_fake = loss_gen = torch.zeros(())
    for step in range(p.steps):
        # L_ψ: denoising score matching on the generator's detached samples at their own prompts. A guided
        # fake score (κ1 ≠ 1) needs its unconditional branch: 10% of the prompts become "" for G and ψ alike.
        c, _, _, t = draw()
        if w_fake != 1.0:
            drop = (torch.rand(2 * B, generator=gen) < CAPTION_DROP).to(dev)
            c = torch.where(drop[:, None, None], e_null, c)
        with torch.no_grad():
            x_g = one_step(generator, scheduler, randn(), c, p.t_init)
        eps = randn()
        a, b = alpha_sigma(scheduler, t)
        e_psi = guided_eps(fake, a * x_g + b * eps, t, c, e_null.expand(2 * B, -1, -1), w_fake)
        loss_fake = two_terms((e_psi - eps).pow(2).sum(dim=(1, 2, 3)))
        opt_fake.zero_grad()
        loss_fake.backward()
        torch.nn.utils.clip_grad_value_(fake.parameters(), p.clip)
        opt_fake.step()

        # L_θ: SiD on remaining prompts + score forgetting (guided teacher at c_o, fake at c_f).
        fake.requires_grad_(False)
        c, c_teacher, neg, t = draw()
        x_g = one_step(generator, scheduler, randn(), c, p.t_init)
        loss_gen = two_terms(sid_loss(teacher, fake, scheduler, x_g, t, randn(), c_teacher, neg, c,
                                      e_null.expand(2 * B, -1, -1), w, w_fake, p.alpha))
        opt_gen.zero_grad()
        loss_gen.backward()
        torch.nn.utils.clip_grad_value_(generator.parameters(), p.clip)
        opt_gen.step()
        fake.requires_grad_(True)
        if (step + 1) % 10 == 0 or step + 1 == p.steps:
            task.progress((step + 1) / p.steps, f"SFD step {step + 1}/{p.steps} "
                          f"L_psi {loss_fake.item():.3f} L_theta {loss_gen.item():.3f}")
    seconds = time.perf_counter() - started

    save_pipeline(tpipe, task.out_dir, unet=generator.eval(), sampler="onestep", t_init=p.t_init)
    meta = {k: v for k, v in base_meta.items() if k not in ("retrained",)}
    meta.update({"sampler": "onestep", "t_init": p.t_init, "teacher_dir": str(teacher_dir.resolve()),
                 "forgotten_concepts": [*earlier, prompts.as_meta()], "method": "sfd"})
    write_meta(task.out_dir, meta)
    return {"concept": prompts.concept, "override": prompts.override, "forget_prompts": len(prompts.forget_prompts),
            "remaining_prompts": len(remaining), "params": p.model_dump(), "seconds": round(seconds, 2),
            "final_loss_fake": loss_fake.item(), "final_loss_generator": loss_gen.item(), "data_free": True}
