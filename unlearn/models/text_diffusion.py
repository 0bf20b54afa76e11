"""A tiny text-to-image diffusion pipeline in diffusers: UNet2DConditionModel (ε-prediction, pixel space)
conditioned through cross-attention on a small transformers text encoder, DDPM schedule, no VAE.

The folder is `DiffusionPipeline.save_pretrained` output (model_index.json, unet/, text_encoder/,
tokenizer/, scheduler/): `TextToImagePipeline.from_pretrained` loads it, and each component loads
on its own with its library (`UNet2DConditionModel.from_pretrained(dir, subfolder="unet")`,
`CLIPTextModel…`, `PreTrainedTokenizerFast…`). diffusers has no pixel-space text-conditioned
pipeline (its text-to-image pipelines decode latents with a VAE), hence the class here; a pipeline
with a VAE is out of scope of this module.

As in `class_diffusion`, one pipeline class serves both artifact kinds:
- "multistep": the teacher, stochastic DDIM from pure noise with classifier-free guidance (CFG);
- "onestep": a distilled generator G(z, c) = f(b_init·z, t_init, c), one network evaluation, no CFG.
CFG follows Ho & Salimans (2022) with the negative-prompt variant SD uses (and SFD's nudity runs):
ε̃ = ε(x, ∅ₙ) + w (ε(x, c) − ε(x, ∅ₙ)), where ∅ₙ is the negative prompt's embedding ("" by default).

Images live in [-1, 1] here and in [0, 1] (the data set's scale, flattened) outside.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.utils import logging as diffusers_logging
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast
from transformers.utils import logging as transformers_logging

from unlearn.contracts import Progress, no_progress
from unlearn.models.class_diffusion import SCHEDULE, TEACHER_ETA, TEACHER_STEPS, alpha_sigma

PAD, UNK = "[PAD]", "[UNK]"
MAX_TOKENS = 10  # the longest shapes caption has 7 words
# Cross-attention in the 4×4 middle block only, plus the text's attention-pooled embedding added to the
# time embedding (diffusers' `addition_embed_type="text"`, as in Kandinsky/unCLIP), which reaches every
# ResNet block the way a class embedding does: shape, colour, count and background are global facts of a
# 16×16 image. Cross-attention at 8×8 tripled the cost of a training step on one CPU thread, and with
# cross-attention alone (no pooled embedding) 1,500 steps left a teacher that mostly ignored its prompt
# (measured while choosing this config).
UNET_CONFIG: dict[str, Any] = {
    "sample_size": 16, "in_channels": 3, "out_channels": 3, "layers_per_block": 1,
    "block_out_channels": [16, 32], "down_block_types": ["DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D"], "mid_block_type": "UNetMidBlock2DCrossAttn",
    "cross_attention_dim": 32, "attention_head_dim": 8, "norm_num_groups": 8,
    "addition_embed_type": "text", "addition_embed_type_num_heads": 4,
}
TEXT_CONFIG: dict[str, Any] = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                               "num_attention_heads": 2, "max_position_embeddings": MAX_TOKENS}
GUIDANCE = 3.0  # the teacher's CFG scale w (SD's default is 7.5; SFD's SD runs use 4.5)
DROP_CAPTION = 0.1  # share of training captions replaced by "" so that the model learns ε(x, ∅)


def build_tokenizer(words: Sequence[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over `words` (lower-cased, split on whitespace and punctuation), padded to
    MAX_TOKENS; words outside the list map to [UNK]."""
    vocab = {PAD: 0, UNK: 1, **{w: i + 2 for i, w in enumerate(sorted(set(words)))}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, unk_token=UNK,
                                   model_max_length=MAX_TOKENS, do_lower_case=True)


def new_text_encoder(vocab_size: int, config: dict[str, Any] | None = None) -> CLIPTextModel:
    # pad and eos ids only matter for the pooled output, which the UNet does not read
    return CLIPTextModel(CLIPTextConfig(vocab_size=vocab_size, pad_token_id=0, bos_token_id=0, eos_token_id=0,
                                        **(config or TEXT_CONFIG)))


def new_unet(config: dict[str, Any] | None = None) -> UNet2DConditionModel:
    return UNet2DConditionModel(**(config or UNET_CONFIG))


def image_shape(unet: UNet2DConditionModel) -> tuple[int, int, int]:
    return (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)


class TextToImagePipeline(DiffusionPipeline):
    """Text-conditioned pixel-space sampler. `sampler`, `t_init` and `guidance_scale` are stored in its config."""

    def __init__(self, unet: UNet2DConditionModel, text_encoder: CLIPTextModel,
                 tokenizer: PreTrainedTokenizerFast, scheduler: DDPMScheduler | DDIMScheduler,
                 sampler: str = "multistep", t_init: int = 440, guidance_scale: float = GUIDANCE) -> None:
        super().__init__()
        self.register_modules(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)
        self.register_to_config(sampler=sampler, t_init=t_init, guidance_scale=guidance_scale)

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """Per-token text embeddings (N, MAX_TOKENS, hidden): what the UNet cross-attends to."""
        return encode(self.text_encoder, self.tokenizer, prompts)

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str], *, negative_prompt: str | Sequence[str] = "",
                 generator: torch.Generator | None = None, num_inference_steps: int = TEACHER_STEPS,
                 eta: float = TEACHER_ETA, guidance_scale: float | None = None) -> torch.Tensor:
        """Images in [-1, 1], shape (N, C, H, W), one per prompt. A one-step generator ignores CFG."""
        device = self.unet.device
        cond = self.encode(prompts)
        z = torch.randn((len(prompts), *image_shape(self.unet)), generator=generator).to(device)
        if self.config.sampler == "onestep":
            return one_step(self.unet, self.scheduler, z, cond, self.config.t_init).clamp(-1, 1)
        neg = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt)
        uncond = self.encode(neg)
        w = self.config.guidance_scale if guidance_scale is None else guidance_scale
        ddim = DDIMScheduler.from_config(self.scheduler.config)
        ddim.set_timesteps(num_inference_steps, device=device)
        x = z
        for t in ddim.timesteps:
            eps = guided_eps(self.unet, x, t.expand(len(x)), cond, uncond, w)
            x = ddim.step(eps, t, x, eta=eta, generator=generator).prev_sample
        return x.clamp(-1, 1)


def encode(text_encoder: CLIPTextModel, tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str]) -> torch.Tensor:
    ids = tokenizer([p.lower() for p in prompts], padding="max_length", max_length=MAX_TOKENS, truncation=True,
                    return_tensors="pt").input_ids.to(text_encoder.device)
    return text_encoder(ids).last_hidden_state


def guided_eps(unet: UNet2DConditionModel, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
               uncond: torch.Tensor, w: float) -> torch.Tensor:
    """CFG ε̃ = ε(x, u) + w (ε(x, c) − ε(x, u)); w = 1 is the plain conditional ε (one evaluation)."""
    if w == 1.0:
        return unet(x_t, t, encoder_hidden_states=cond).sample
    both = unet(torch.cat([x_t, x_t]), torch.cat([t, t]), encoder_hidden_states=torch.cat([cond, uncond])).sample
    e_c, e_u = both.chunk(2)
    return e_u + w * (e_c - e_u)


def denoise(unet: UNet2DConditionModel, scheduler: DDPMScheduler, x_t: torch.Tensor, t: torch.Tensor,
            cond: torch.Tensor, uncond: torch.Tensor | None = None, w: float = 1.0) -> torch.Tensor:
    """f(x_t, t, c) = (x_t − b_t ε̃(x_t, t, c)) / a_t: the (guided, where w ≠ 1) estimate of x_0."""
    a, b = alpha_sigma(scheduler, t)
    eps = guided_eps(unet, x_t, t, cond, uncond if uncond is not None else cond, w)
    return (x_t - b * eps) / a


def one_step(unet: UNet2DConditionModel, scheduler: DDPMScheduler, z: torch.Tensor, cond: torch.Tensor,
             t_init: int) -> torch.Tensor:
    """SiD's generator G(z, c) = f(b_init·z, t_init, c): x_0 = 0 noised to t_init, denoised once."""
    t = torch.full((len(z),), t_init, dtype=torch.long, device=z.device)
    _, b = alpha_sigma(scheduler, t)
    return denoise(unet, scheduler, b * z, t, cond)


def train_teacher(X: np.ndarray, captions: Sequence[str], words: Sequence[str], *, steps: int, lr: float,
                  batch_size: int, ema: float, seed: int, device: str = "cpu", progress: Progress = no_progress,
                  unet_config: dict[str, Any] | None = None) -> TextToImagePipeline:
    """DDPM's ε-MSE objective on (image, caption) pairs, UNet and text encoder trained together from
    scratch; captions dropped to "" with probability DROP_CAPTION (CFG's unconditional model). Returns the
    pipeline of the EMA weights. X: (N, C·H·W) in [0, 1] of the UNet's shape; captions: (N,) texts;
    words: the tokenizer's vocabulary."""
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(words)
    unet = new_unet(unet_config).to(device).train()
    text_encoder = new_text_encoder(len(tokenizer)).to(device).train()
    nets = torch.nn.ModuleList([unet, text_encoder])
    ema_nets = copy.deepcopy(nets).requires_grad_(False)
    scheduler = DDPMScheduler(**SCHEDULE)
    opt = torch.optim.AdamW(nets.parameters(), lr=lr, weight_decay=0.0)
    x0_all = torch.as_tensor(X, dtype=torch.float32, device=device).view(-1, *image_shape(unet)) * 2 - 1
    ids_all = tokenizer(list(captions), padding="max_length", max_length=MAX_TOKENS, truncation=True,
                        return_tensors="pt").input_ids.to(device)
    null_ids = torch.zeros(MAX_TOKENS, dtype=torch.long, device=device)  # "" tokenizes to all padding
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        i = torch.randint(len(x0_all), (batch_size,), generator=gen).to(device)
        t = torch.randint(SCHEDULE["num_train_timesteps"], (batch_size,), generator=gen).to(device)
        eps = torch.randn(x0_all[i].shape, generator=gen).to(device)
        drop = (torch.rand(batch_size, generator=gen) < DROP_CAPTION).to(device)
        ids = torch.where(drop[:, None], null_ids, ids_all[i])
        a, b = alpha_sigma(scheduler, t)
        cond = text_encoder(ids).last_hidden_state
        loss = (unet(a * x0_all[i] + b * eps, t, encoder_hidden_states=cond).sample - eps).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for p_ema, p in zip(ema_nets.parameters(), nets.parameters(), strict=True):
                p_ema.lerp_(p, 1 - ema)
        if (step + 1) % 100 == 0 or step + 1 == steps:
            progress((step + 1) / steps, f"text-to-image teacher step {step + 1}/{steps} loss {loss.item():.4f}")
    unet, text_encoder = (m.eval() for m in ema_nets)
    return TextToImagePipeline(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)


def save_pipeline(pipe: TextToImagePipeline, out_dir: Path, *, unet: UNet2DConditionModel | None = None,
                  sampler: str | None = None, t_init: int | None = None) -> None:
    """Write `pipe` (its UNet replaced by `unet`, its sampler by `sampler`/`t_init`, where given) as one folder."""
    cfg = pipe.config
    out = TextToImagePipeline(unet=copy.deepcopy(unet if unet is not None else pipe.unet).cpu(),
                              text_encoder=copy.deepcopy(pipe.text_encoder).cpu(), tokenizer=pipe.tokenizer,
                              scheduler=DDPMScheduler.from_config(pipe.scheduler.config),
                              sampler=sampler or cfg.sampler, t_init=cfg.t_init if t_init is None else t_init,
                              guidance_scale=cfg.guidance_scale)
    out.save_pretrained(str(out_dir), safe_serialization=True)


def is_text_to_image(model_dir: Path) -> bool:
    """Whether the pipeline folder at `model_dir` has a text encoder (else it is class-conditional)."""
    index = Path(model_dir) / "model_index.json"
    return index.exists() and "text_encoder" in json.loads(index.read_text())


def load_pipeline(model_dir: Path, device: str = "cpu") -> TextToImagePipeline:
    """A pipeline folder with `unet/` (a `UNet2DConditionModel`), `text_encoder/` (any transformers
    encoder `AutoModel` reads whose `last_hidden_state` has the UNet's `cross_attention_dim`),
    `tokenizer/` and a DDPM-type `scheduler/`. Sampler settings come from `model_index.json`
    ("multistep", t_init 440 and GUIDANCE where it does not say). Weights are frozen (eval, no grad).
    Raises ValueError when a component is missing or the encoder's width does not fit the UNet."""
    from transformers import AutoModel, AutoTokenizer

    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    model_dir = Path(model_dir)
    index = json.loads((model_dir / "model_index.json").read_text())
    missing = [k for k in ("unet", "text_encoder", "tokenizer", "scheduler") if not (model_dir / k).is_dir()]
    if missing:
        raise ValueError(f"{model_dir}: a text-to-image pipeline needs the folders {', '.join(missing)}")
    unet = UNet2DConditionModel.from_pretrained(str(model_dir), subfolder="unet")
    text_encoder = AutoModel.from_pretrained(str(model_dir / "text_encoder"))
    width = getattr(text_encoder.config, "hidden_size", None)
    if width != unet.config.cross_attention_dim:
        raise ValueError(f"{model_dir}: the text encoder's width {width} is not the UNet's cross_attention_dim "
                         f"{unet.config.cross_attention_dim}")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir / "tokenizer"))
    scheduler = DDPMScheduler.from_config(DDPMScheduler.load_config(str(model_dir), subfolder="scheduler"))
    pipe = TextToImagePipeline(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
                               sampler=index.get("sampler", "multistep"), t_init=int(index.get("t_init", 440)),
                               guidance_scale=float(index.get("guidance_scale", GUIDANCE)))
    pipe.unet.eval().requires_grad_(False)
    pipe.text_encoder.eval().requires_grad_(False)
    return pipe.to(device)


def generate(pipe: TextToImagePipeline, prompts: Sequence[str], *, seed: int, batch_size: int = 250,
             num_inference_steps: int = TEACHER_STEPS, negative_prompt: str = "") -> np.ndarray:
    """Images for `prompts` in the data set's scale: (N, C·H·W) float32 in [0, 1]; the same `seed` gives
    the same noise for the same prompt positions."""
    gen = torch.Generator().manual_seed(seed)
    out = [pipe(list(prompts[i:i + batch_size]), generator=gen, num_inference_steps=num_inference_steps,
                negative_prompt=negative_prompt) for i in range(0, len(prompts), batch_size)]
    return ((torch.cat(out).flatten(1).cpu().numpy() + 1) / 2).astype(np.float32)
