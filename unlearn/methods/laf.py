"""Label-Agnostic Forgetting (Shen, Zhang, Zhao, Bialkowski, Chen & Xu, ICLR 2024; arXiv:2404.00506).

Unlearning without labels: only the unlabelled inputs of the forget set D_f and of the
remaining data D_r are read. The network must expose `extractor` (x → representation e = g(x))
and `head` (e → logits); the head is never updated. Steps, after the official code (where the
paper and the code differ, the code is followed, as the reviewers recommend):

  1. VAEs on the frozen original representations: VAE_r on the whole training data D
     (the paper's Eq. 4 approximation of the remaining-data distribution), VAE_f on D_f;
     loss ‖ê − e‖²/B + 0.025·KL/B; decoder ends in a sigmoid (kept for fidelity, although it
     cannot reproduce negative embedding values).
  2. Teacher g₀ = frozen copy of the original extractor; student g = the original, eval mode.
  3. Each epoch, ⌈|D_f|/B⌉ steps over (D_f batch, D_r batch), alternating:
     (a) extractor unlearning (Eq. 8–9 as implemented), with ℓ(x) = Σ_dims (VAE(g(x)) − g(x))²:
           L_UE = Σ_{D_r} exp(ℓ_r/(ℓ_r+1)) − Σ_{D_f} exp(ℓ_f/(ℓ_f+1))
         (ℓ_r under VAE_r, ℓ_f under VAE_f): keep D_r representations typical of the remaining
         data while pushing D_f representations away from what VAE_f can reconstruct;
     (b) representation alignment, a contrastive loss with d(a, b) = 1 − cos(a, b):
           L_RA = Σ_{i∈D_r} log[ exp(d(g(s_i), g₀(s_i))) / Σ_{j∈D_f} exp(d(g(u_j), g₀(u_j))/τ) ]
         pulls remaining representations onto the original's and pushes forget ones off it.
  (LAF+R, the optional supervised head repair, needs labels and is not part of this method.)

Our scale. The number of steps scales with |D_f|, so the official CNN settings (20 epochs, lr
5e-5/1e-4) forget nothing at digits scale. Defaults here, tuned on 8×8 digits: lr_UE 5e-4,
lr_RA 1e-3; class removal and corrective (noisy-label) requests 60 epochs, τ = 20; data removal at
most 30 epochs, τ = 5 (the paper's τ's).

Data removal stops early, on a label-free criterion (ours, not the paper's), because a fixed epoch
count either forgot nothing or collapsed accuracy depending on the forget draw. A model retrained
without D_f treats D_f like data it never saw, so after each epoch we compare the mean top-class
probability of the model on D_f with the same on the data set's held-out inputs (never trained on;
their labels are not read) and stop once D_f is no more confident than unseen data.
The measurements behind these choices: benchmarks/results/laf_notes.md (results: laf.md).
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from unlearn.artifacts import read_meta
from unlearn.families.classifier import dataset_of
from unlearn.methods.base import MethodError, MethodParams, MethodSpec, UnlearnTask
from unlearn.models import get_arch

# Per setting: the paper's τ; epochs tuned on digits; data removal stops early (module docstring).
SETTINGS = {"class": {"epochs": 60, "tau": 20.0, "early_stop": False},
            "corrective": {"epochs": 60, "tau": 20.0, "early_stop": False},
            "data": {"epochs": 30, "tau": 5.0, "early_stop": True}}


class Params(MethodParams):
    """LAF's parameters. `epochs`, `tau` and `early_stop` left at None take the setting's value (`SETTINGS`)."""

    lr_ue: float = Field(5e-4, gt=0, le=1, description="Adam learning rate of the extractor-unlearning step")
    lr_ra: float = Field(1e-3, gt=0, le=1, description="Adam learning rate of the representation-alignment step")
    batch_size: int = Field(32, ge=1, le=4096)
    latent: int = Field(8, ge=1, le=1024, description="VAE latent size")
    vae_epochs: int = Field(10, ge=1, le=1000)
    vae_lr: float = Field(1e-3, gt=0, le=1)
    kl_weight: float = Field(0.025, ge=0, le=100)
    max_retain: int = Field(5000, ge=1, le=10_000_000, description="remaining samples read at most (a random subset)")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    epochs: int | None = Field(None, ge=1, le=10_000)
    tau: float | None = Field(None, gt=0, le=1000, description="temperature of the forget pairs in L_RA")
    early_stop: bool | None = Field(None, description="stop once D_f looks no more familiar than unseen data")

    def resolved(self, setting: str) -> dict[str, Any]:
        """Every parameter, the ones left at None filled from `SETTINGS[setting]`."""
        given = self.model_dump()
        return {**given, **{k: v for k, v in SETTINGS[setting].items() if given[k] is None}}


DEFAULTS: dict[str, Any] = Params().model_dump(exclude=set(SETTINGS["data"]))  # the setting-independent defaults

# Tighter than the classifier family's gates: in class removal, test and retain accuracy at most 2 points
# under retrain's; in any other removal, forget accuracy within 3 points of retrain's on either side
# ("forget_acc_tol"), because a label-free method can forget more than retraining would, not only less.
GATES: dict[str, dict[str, float]] = {"class": {"forget_acc_margin": 0.05, "test_acc_margin": 0.02},
                                      "*": {"forget_acc_tol": 0.03}}


class VAE(nn.Module):
    """LAF's representation VAE: e → (ê, μ, log σ²); encoder d→128→32→L, decoder L→32→128→d."""

    def __init__(self, dim: int, latent: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(dim, 128), nn.ReLU(), nn.Linear(128, 32), nn.ReLU())
        self.mu, self.logvar = nn.Linear(32, latent), nn.Linear(32, latent)
        self.decoder = nn.Sequential(nn.Linear(latent, 32), nn.ReLU(), nn.Linear(32, 128), nn.ReLU(),
                                     nn.Linear(128, dim), nn.Sigmoid())

    def forward(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.encoder(e)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.decoder(z), mu, logvar


def fit_vae(E: torch.Tensor, *, latent: int, epochs: int, lr: float, batch_size: int, kl_weight: float,
            generator: torch.Generator) -> VAE:
    """Step 1: a VAE on fixed representations E (rows)."""
    vae = VAE(E.shape[1], latent).to(E.device)
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    for _ in range(epochs):
        for b in _batches(len(E), batch_size, generator, E.device):
            recon, mu, logvar = vae(E[b])
            kl = -0.5 * torch.sum(logvar + 1 - mu ** 2 - logvar.exp())
            loss = (((recon - E[b]) ** 2).sum() + kl_weight * kl) / len(b)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return vae.eval().requires_grad_(False)


def bounded_reconstruction(vae: VAE, e: torch.Tensor) -> torch.Tensor:
    """Σ_i exp(ℓ_i/(ℓ_i+1)) with ℓ_i the squared reconstruction error of row i."""
    err = ((vae(e)[0] - e) ** 2).sum(dim=1)
    return torch.exp(err / (err + 1)).sum()


def extractor_unlearning_loss(e_r: torch.Tensor, e_f: torch.Tensor, vae_r: VAE, vae_f: VAE) -> torch.Tensor:
    """Step 3a, L_UE."""
    return bounded_reconstruction(vae_r, e_r) - bounded_reconstruction(vae_f, e_f)


def alignment_loss(s: torch.Tensor, s0: torch.Tensor, u: torch.Tensor, u0: torch.Tensor,
                   tau: float) -> torch.Tensor:
    """Step 3b, L_RA: remaining pairs (s, s0) are positives, forget pairs (u, u0) the negatives."""
    d_r = 1 - F.cosine_similarity(s, s0, dim=1)
    d_f = 1 - F.cosine_similarity(u, u0, dim=1)
    return torch.sum(d_r - torch.log(torch.sum(torch.exp(d_f / tau))))


@torch.no_grad()
def confidence(model: nn.Module, X: torch.Tensor) -> float:
    """Mean top-class probability: how familiar the inputs look to the model, without labels."""
    return torch.softmax(model(X), dim=1).max(dim=1).values.mean().item()


def _batches(n: int, batch_size: int, generator: torch.Generator, device: str | torch.device):
    order = torch.randperm(n, generator=generator).to(device)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def _setting(task: UnlearnTask) -> str:
    if task.scope.kind == "corrective":
        return "corrective"
    return "class" if task.scope.type == "class" else "data"


def run(task: UnlearnTask) -> dict[str, Any]:
    if not task.forget_ids or not task.retain_ids:
        raise MethodError("LAF needs samples to forget and remaining samples (unlabelled)")
    p = SPEC.parse_params(task.params).resolved(_setting(task))
    arch_name = read_meta(task.base_dir)["arch"]
    arch = get_arch(arch_name)
    if not hasattr(arch, "load_module"):
        raise MethodError(f"LAF needs a torch network; architecture {arch_name!r} is not one")
    model, meta = arch.load_module(task.base_dir, task.device)
    if not (hasattr(model, "extractor") and hasattr(model, "head")):
        raise MethodError(f"LAF needs a network split into extractor and head (LAF's g and its classifier); "
                          f"architecture {meta['arch']!r} is not (forget its samples with retrain)")
    data = dataset_of(task.base_dir)
    gen = torch.Generator().manual_seed(int(p["seed"]))
    torch.manual_seed(int(p["seed"]))  # VAE initialisation and sampling
    retain_ids = list(task.retain_ids)
    if len(retain_ids) > p["max_retain"]:  # a subset of the remaining data is enough
        pick = np.random.default_rng(int(p["seed"])).choice(len(retain_ids), int(p["max_retain"]), replace=False)
        retain_ids = [retain_ids[i] for i in np.sort(pick)]
    # Inputs only: the labels the data set holds are never read.
    X_f = torch.as_tensor(data.X[data.rows(task.forget_ids)], device=task.device)
    X_r = torch.as_tensor(data.X[data.rows(retain_ids)], device=task.device)
    X_unseen = torch.as_tensor(data.X[data.rows(data.ids_in("holdout"))], device=task.device)
    early_stop = bool(p["early_stop"]) and len(X_unseen) > 0
    bs = int(p["batch_size"])

    t0 = time.perf_counter()
    student = model.extractor
    teacher = copy.deepcopy(student).eval().requires_grad_(False)  # step 2
    with torch.no_grad():
        E_f, E_r = teacher(X_f), teacher(X_r)
    vae_kw = {"latent": int(p["latent"]), "epochs": int(p["vae_epochs"]), "lr": float(p["vae_lr"]),
              "batch_size": bs, "kl_weight": float(p["kl_weight"]), "generator": gen}
    vae_r = fit_vae(torch.cat([E_f, E_r]), **vae_kw)  # step 1, Eq. 4: VAE_r on all of D
    vae_f = fit_vae(E_f, **vae_kw)
    vae_s = time.perf_counter() - t0
    task.progress(0.1, "VAEs trained")

    opt_ue = torch.optim.Adam(student.parameters(), lr=float(p["lr_ue"]))
    opt_ra = torch.optim.Adam(student.parameters(), lr=float(p["lr_ra"]))
    epochs, steps, stopped_at = int(p["epochs"]), 0, None
    ue = ra = float("nan")
    for epoch in range(epochs):
        f_batches = _batches(len(X_f), bs, gen, task.device)
        r_batches = _batches(len(X_r), bs, gen, task.device)
        for fb, rb in zip(f_batches, r_batches, strict=False):  # ⌈|D_f|/B⌉ steps, as the official loader zip
            u, s = X_f[fb], X_r[rb]
            loss_ue = extractor_unlearning_loss(student(s), student(u), vae_r, vae_f)  # step 3a
            opt_ue.zero_grad()
            loss_ue.backward()
            opt_ue.step()
            with torch.no_grad():
                s0, u0 = teacher(s), teacher(u)
            loss_ra = alignment_loss(student(s), s0, student(u), u0, float(p["tau"]))  # step 3b
            opt_ra.zero_grad()
            loss_ra.backward()
            opt_ra.step()
            ue, ra, steps = loss_ue.item(), loss_ra.item(), steps + 1
        task.progress(0.1 + 0.9 * (epoch + 1) / epochs, f"epoch {epoch + 1}/{epochs}")
        if early_stop and confidence(model, X_f) <= confidence(model, X_unseen):
            stopped_at = epoch + 1
            break
    if not (math.isfinite(ue) and math.isfinite(ra)):
        raise MethodError("LAF diverged (non-finite loss); lower lr_ue / lr_ra")
    model.eval()
    arch.save(model, {**meta, "method": "laf", "parent_dir": str(task.base_dir)}, task.out_dir)
    return {**{k: p[k] for k in ("epochs", "lr_ue", "lr_ra", "tau", "batch_size", "latent")},
            "setting": _setting(task), "steps": steps, "stopped_at_epoch": stopped_at, "n_forget": len(X_f), "n_remaining_used": len(X_r),
            "vae_seconds": round(vae_s, 3), "seconds": round(time.perf_counter() - t0, 3),
            "final_loss_ue": ue, "final_loss_ra": ra}


SPEC = MethodSpec(name="laf", families=("classifier",), run=run, params=Params, gates=GATES, needs_labels=False)
