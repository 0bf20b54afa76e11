"""A tiny class-conditional diffusion model in diffusers: UNet2DModel (ε-prediction) + DDPM schedule.

One pipeline class serves both kinds of artifact of the diffusion family:
- "multistep": the teacher, sampled with DDIM from pure noise;
- "onestep": a distilled generator G(z, c) = f(b_init·z, t_init, c), one network evaluation,
  where f is the denoiser below (SiD/SFD's one-step generator in its VP form).
The folder is `DiffusionPipeline.save_pretrained` output, so `DigitsDiffusionPipeline.from_pretrained`
(or `UNet2DModel.from_pretrained(dir / "unet")`) loads it without this project.

Images live in [-1, 1] here and in [0, 1] (the digits data set's scale) outside.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline, UNet2DModel
from diffusers.utils import logging as diffusers_logging

from unlearn.contracts import Progress, no_progress

# about 160k parameters: enough for 8×8 digits, and a minute of CPU training (benchmarks/results/defaults_notes.md)
UNET_CONFIG: dict[str, Any] = {
    "sample_size": 8, "in_channels": 1, "out_channels": 1, "layers_per_block": 1,
    "block_out_channels": [16, 32], "down_block_types": ["DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D"], "norm_num_groups": 8, "add_attention": False,
    "num_class_embeds": 10,
}
SCHEDULE: dict[str, Any] = {"num_train_timesteps": 1000, "beta_schedule": "linear",
                            "beta_start": 1e-4, "beta_end": 0.02}


# The teacher's sampler: stochastic DDIM (η = 1, DDPM-like ancestral noise) with 10 steps: the ancestral
# noise corrects a small teacher's low-noise score errors, which deterministic DDIM leaves in its samples
# (benchmarks/results/defaults_notes.md).
TEACHER_STEPS = 10
TEACHER_ETA = 1.0


class DigitsDiffusionPipeline(DiffusionPipeline):
    """Class-conditional sampler. `sampler`/`t_init` are stored in the pipeline's config."""

    def __init__(self, unet: UNet2DModel, scheduler: DDPMScheduler | DDIMScheduler,
                 sampler: str = "multistep", t_init: int = 440) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(sampler=sampler, t_init=t_init)

    @torch.no_grad()
    def __call__(self, class_labels: Sequence[int] | torch.Tensor, *, generator: torch.Generator | None = None,
                 num_inference_steps: int = TEACHER_STEPS, eta: float = TEACHER_ETA) -> torch.Tensor:
        """Images in [-1, 1], shape (N, C, H, W)."""
        device = self.unet.device
        c = torch.as_tensor(class_labels, dtype=torch.long, device=device)
        z = torch.randn((len(c), *image_shape(self.unet)), generator=generator).to(device)
        if self.config.sampler == "onestep":
            return one_step(self.unet, self.scheduler, z, c, self.config.t_init).clamp(-1, 1)
        ddim = DDIMScheduler.from_config(self.scheduler.config)
        ddim.set_timesteps(num_inference_steps, device=device)
        x = z
        for t in ddim.timesteps:
            x = ddim.step(self.unet(x, t, class_labels=c).sample, t, x, eta=eta, generator=generator).prev_sample
        return x.clamp(-1, 1)


def new_unet(config: dict[str, Any] | None = None) -> UNet2DModel:
    return UNet2DModel(**(config or UNET_CONFIG))


def new_scheduler() -> DDPMScheduler:
    return DDPMScheduler(**SCHEDULE)


def image_shape(unet: UNet2DModel) -> tuple[int, int, int]:
    return (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)


def alpha_sigma(scheduler: DDPMScheduler, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """a_t = √ᾱ_t and b_t = √(1−ᾱ_t), broadcast to images: x_t = a_t x_0 + b_t ε."""
    abar = scheduler.alphas_cumprod.to(t.device)[t].float().view(-1, 1, 1, 1)
    return abar.sqrt(), (1 - abar).sqrt()


def denoise(unet: UNet2DModel, scheduler: DDPMScheduler, x_t: torch.Tensor, t: torch.Tensor,
            c: torch.Tensor) -> torch.Tensor:
    """f(x_t, t, c) = (x_t − b_t ε(x_t, t, c)) / a_t: the model's estimate of x_0."""
    a, b = alpha_sigma(scheduler, t)
    return (x_t - b * unet(x_t, t, class_labels=c).sample) / a


def one_step(unet: UNet2DModel, scheduler: DDPMScheduler, z: torch.Tensor, c: torch.Tensor,
             t_init: int) -> torch.Tensor:
    """SiD's generator G(z, c) = f(b_init·z, t_init, c): x_0 = 0 noised to t_init, denoised once."""
    t = torch.full((len(z),), t_init, dtype=torch.long, device=z.device)
    _, b = alpha_sigma(scheduler, t)
    return denoise(unet, scheduler, b * z, t, c)


def train_teacher(X: np.ndarray, y: np.ndarray, *, steps: int, lr: float, batch_size: int, ema: float,
                  seed: int, device: str = "cpu", progress: Progress = no_progress,
                  unet_config: dict[str, Any] | None = None) -> UNet2DModel:
    """DDPM's ε-MSE objective; returns the EMA weights (what SFD initialises from).

    X: (N, C·H·W) images in [0, 1] flattened, the shape of `unet_config` (default `UNET_CONFIG`, 8×8 digits);
    y: (N,) class labels below the config's `num_class_embeds`."""
    torch.manual_seed(seed)
    unet = new_unet(unet_config).to(device).train()
    ema_unet = copy.deepcopy(unet).requires_grad_(False)
    scheduler = new_scheduler()
    opt = torch.optim.Adam(unet.parameters(), lr=lr)
    x0_all = torch.as_tensor(X, dtype=torch.float32, device=device).view(-1, *image_shape(unet)) * 2 - 1
    y_all = torch.as_tensor(y, dtype=torch.long, device=device)
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        i = torch.randint(len(x0_all), (batch_size,), generator=gen).to(device)
        t = torch.randint(SCHEDULE["num_train_timesteps"], (batch_size,), generator=gen).to(device)
        eps = torch.randn(x0_all[i].shape, generator=gen).to(device)
        a, b = alpha_sigma(scheduler, t)
        loss = (unet(a * x0_all[i] + b * eps, t, class_labels=y_all[i]).sample - eps).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for p_ema, p in zip(ema_unet.parameters(), unet.parameters(), strict=True):
                p_ema.lerp_(p, 1 - ema)
        if (step + 1) % 100 == 0 or step + 1 == steps:
            progress((step + 1) / steps, f"teacher step {step + 1}/{steps} loss {loss.item():.4f}")
    return ema_unet.eval()


def save_pipeline(unet: UNet2DModel, out_dir: Path, *, sampler: str, t_init: int = 440) -> None:
    pipe = DigitsDiffusionPipeline(unet=copy.deepcopy(unet).cpu(), scheduler=new_scheduler(),
                                   sampler=sampler, t_init=t_init)
    pipe.save_pretrained(str(out_dir), safe_serialization=True)


def load_pipeline(model_dir: Path, device: str = "cpu") -> DigitsDiffusionPipeline:
    """Any diffusers pipeline folder with a class-conditional `unet/` (a `UNet2DModel` with
    `num_class_embeds`) and a DDPM-type `scheduler/`: this project's own, or a team's `DDPMPipeline`
    saved with `save_pretrained`. The sampler ("multistep" or "onestep" and its `t_init`) is read from
    `model_index.json`, "multistep" where the pipeline does not say. Raises ValueError for a UNet that
    takes no class labels (text conditioning is a different pipeline)."""
    diffusers_logging.disable_progress_bar()
    model_dir = Path(model_dir)
    index = json.loads((model_dir / "model_index.json").read_text())
    unet = UNet2DModel.from_pretrained(str(model_dir), subfolder="unet")
    if not unet.config.num_class_embeds:
        raise ValueError(f"{model_dir}: the pipeline's UNet is not class-conditional (no num_class_embeds)")
    scheduler = DDPMScheduler.from_config(DDPMScheduler.load_config(str(model_dir), subfolder="scheduler"))
    pipe = DigitsDiffusionPipeline(unet=unet, scheduler=scheduler, sampler=index.get("sampler", "multistep"),
                                   t_init=int(index.get("t_init", 440)))
    pipe.unet.eval().requires_grad_(False)
    return pipe.to(device)


def generate(pipe: DigitsDiffusionPipeline, labels: Sequence[int], *, seed: int, batch_size: int = 500,
             num_inference_steps: int = TEACHER_STEPS) -> np.ndarray:
    """Images for `labels` in the digits data set's scale: (N, 64) float32 in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    out = [pipe(labels[i:i + batch_size], generator=gen, num_inference_steps=num_inference_steps)
           for i in range(0, len(labels), batch_size)]
    return ((torch.cat(out).flatten(1).cpu().numpy() + 1) / 2).astype(np.float32)
