"""The diffusion family's verifier: class forgetting judged on generated samples.

A judge classifier (a zoo model trained on the same digits, never used inside any method)
labels `n_per_class` generations of every class, from fixed noise seeds, for:
- the candidate,
- the teacher's multi-step sampler (the base the gates are relative to),
- the retrain reference (reported, not gated: it never saw the class, so its "forgotten"
  generations are whatever an untrained class embedding gives).

Gates (owner's issue):
- forget_rate: share of the forgotten class's generations the judge still reads as that class, <= 5%;
- retained_acc_ratio: judge accuracy on retained classes over the teacher's, >= 0.95;
- retained_fd_ratio: Fréchet distance of the judge's penultimate features (retained classes,
  against all real digits of those classes) over the teacher's, <= 1.25. Accuracy alone passes
  class-consistent blurry images; this is the criterion that rejects them.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
import torch

from unlearn.artifacts import read_meta
from unlearn.data import get_dataset
from unlearn.models import class_diffusion, get_arch, mlp
from unlearn.verify.holdout import GATE_DEFAULTS as HOLDOUT_GATES
from unlearn.verify.holdout import mia_criterion
from unlearn.verify.verdict import Verdict, criterion

DEFAULT_THRESHOLDS = {"forget_rate": 0.05, "retained_acc_ratio": 0.95, "retained_fd_ratio": 1.25,
                      "holdout_auc_tol": HOLDOUT_GATES["holdout_auc_tol"]}
N_PER_CLASS = 100
SEED = 0


@dataclass(frozen=True)
class Judged:
    """The judge's view of `n` generations per class of one model."""

    labels: np.ndarray  # (N,) the class each sample was generated for
    predicted: np.ndarray  # (N,) the judge's label
    features: np.ndarray  # (N, F) float64, judge penultimate layer
    images: np.ndarray  # (N, 64) in [0, 1]


@lru_cache(maxsize=4)
def load_judge(judge_dir: str, device: str = "cpu") -> tuple[str, Any]:
    """(architecture, network) of the judge at `judge_dir`: any classifier-family folder (its
    `unlearn.json["arch"]`), the zoo's MLP judge by default."""
    arch = read_meta(Path(judge_dir)).get("arch", "mlp")
    if arch == "mlp":
        return arch, mlp.load_module(Path(judge_dir), device)[0]
    return arch, get_arch(arch).load(Path(judge_dir), device)


@torch.no_grad()
def judge(judge_dir: Path, X: np.ndarray, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(predicted labels (N,), features (N, F) float64) of the judge on images X (N, C·H·W) in [0, 1].

    Features are the MLP judge's penultimate layer; for any other architecture its log-probabilities,
    the one representation every classifier architecture returns (a coarser space for the Fréchet
    distance, but the same for the candidate and the teacher)."""
    arch, model = load_judge(str(judge_dir), device)
    if arch == "mlp":
        net = model.net
        h = net[:-1](torch.as_tensor(X, dtype=torch.float32, device=device))
        return net[-1](h).argmax(1).cpu().numpy(), h.double().cpu().numpy()
    logp = np.asarray(model(np.asarray(X, dtype=np.float32)), dtype=np.float64)
    return logp.argmax(1), logp


@lru_cache(maxsize=16)
def judged_generations(model_dir: str, judge_dir: str, n_per_class: int = N_PER_CLASS, seed: int = SEED,
                       device: str = "cpu") -> Judged:
    """Artifact folders never change once written, so a folder's judged samples are cached by path,
    and a multi-step model's (10 network evaluations per image) on disk too, see `disk_cache`."""
    pipe = class_diffusion.load_pipeline(Path(model_dir), device)
    cache = disk_cache(Path(model_dir), Path(judge_dir), n_per_class, seed) \
        if pipe.config.sampler == "multistep" else None
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            return Judged(z["labels"], z["predicted"], z["features"], z["images"])
    labels = np.repeat(np.arange(pipe.unet.config.num_class_embeds), n_per_class)
    images = class_diffusion.generate(pipe, labels, seed=seed)
    predicted, features = judge(Path(judge_dir), images, device)
    j = Judged(labels, predicted, features, images)
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, labels=labels, predicted=predicted, features=features, images=images)
            tmp.replace(cache)  # atomic: a concurrent reader never sees half a file
        except OSError:
            pass  # a read-only model store only costs the resampling
    return j


def disk_cache(model_dir: Path, judge_dir: Path, n_per_class: int, seed: int) -> Path:
    """`.<model>.judged/<key>.npz` next to the model folder, outside it (artifact folders carry a
    sha256 manifest). The key hashes both networks' weights and the sampling settings, so a rebuilt
    teacher or judge at the same path never reads stale figures."""
    return judged_cache_path(model_dir, judge_dir, f"{n_per_class}:{seed}:{class_diffusion.TEACHER_STEPS}:"
                                                   f"{class_diffusion.TEACHER_ETA}")


def judged_cache_path(model_dir: Path, judge_dir: Path, settings: str, prefix: str = "") -> Path:
    """`.<model>.judged/<prefix><key>.npz` beside `model_dir`: the key hashes `settings` and both folders'
    safetensors bytes."""
    h = hashlib.sha256(settings.encode())
    for folder in (model_dir, judge_dir):
        for f in sorted(folder.rglob("*.safetensors")):
            h.update(f.read_bytes())
    return model_dir.parent / f".{model_dir.name}.judged" / f"{prefix}{h.hexdigest()[:24]}.npz"


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2(Σ_a Σ_b)^½), in float64 (FID's formula on other features)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    # Dead ReLU units make the covariances singular; a tiny ridge keeps sqrtm well defined.
    ridge = 1e-6 * np.eye(a.shape[1])
    cov_a, cov_b = np.cov(a, rowvar=False) + ridge, np.cov(b, rowvar=False) + ridge
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = scipy.linalg.sqrtm(cov_a @ cov_b)
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a + cov_b - 2 * np.real(root)))


@dataclass(frozen=True)
class Figures:
    forget_rate: float
    override_rate: float
    retained_acc: float
    retained_fd: float

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {prefix + k: float(v) for k, v in self.__dict__.items()}


def figures(j: Judged, real_features: np.ndarray, real_labels: np.ndarray, *, forgotten: int,
            override: int, retained: Sequence[int]) -> Figures:
    fg = j.labels == forgotten
    kept = np.isin(j.labels, retained)
    return Figures(
        forget_rate=float((j.predicted[fg] == forgotten).mean()),
        override_rate=float((j.predicted[fg] == override).mean()),
        retained_acc=float((j.predicted[kept] == j.labels[kept]).mean()),
        retained_fd=frechet_distance(j.features[kept], real_features[np.isin(real_labels, retained)]),
    )


def gate_rows(cand: Any, teacher: Any, ref: Any | None, th: dict[str, float], *, fd_scale: float,
              details: tuple[str, str, str]) -> list:
    """The diffusion gates from a model's figures (anything with `forget_rate`, `retained_acc` and
    `retained_fd`): the forget rate, the remaining accuracy over the teacher's, and the Fréchet distance over
    `fd_scale`, each beside the reference's value where there is one; `details` word the three rows."""
    forget_detail, acc_detail, fd_detail = details
    return [
        criterion("forget_rate", cand.forget_rate, "<=", th["forget_rate"],
                  reference=ref.forget_rate if ref else None, detail=forget_detail),
        criterion("retained_acc_ratio", cand.retained_acc / teacher.retained_acc, ">=", th["retained_acc_ratio"],
                  reference=ref.retained_acc / teacher.retained_acc if ref else None, detail=acc_detail),
        criterion("retained_fd_ratio", cand.retained_fd / fd_scale, "<=", th["retained_fd_ratio"],
                  reference=ref.retained_fd / fd_scale if ref else None, detail=fd_detail),
    ]


def verify_diffusion(candidate_dir: Path, teacher_dir: Path, judge_dir: Path, *, forgotten: int, override: int,
                     retained: Sequence[int], dataset: dict, reference_dir: Path | None = None,
                     thresholds: dict[str, float] | None = None, report_dir: Path | None = None,
                     n_per_class: int = N_PER_CLASS, device: str = "cpu") -> Verdict:
    th = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    data = get_dataset(dataset)
    _, real_features = judge(judge_dir, data.X, device)

    def of(model_dir: Path) -> tuple[Judged, Figures]:
        j = judged_generations(str(Path(model_dir).resolve()), str(Path(judge_dir).resolve()),
                               n_per_class, SEED, device)
        return j, figures(j, real_features, data.y, forgotten=forgotten, override=override, retained=retained)

    cand_j, cand = of(candidate_dir)
    teach_j, teacher = of(teacher_dir)
    ref = of(reference_dir)[1] if reference_dir is not None else None
    rows = gate_rows(cand, teacher, ref, th, fd_scale=teacher.retained_fd, details=(
        f"share of class-{forgotten} generations the judge reads as {forgotten}; teacher {teacher.forget_rate:.3f}",
        f"judge accuracy on retained classes {cand.retained_acc:.3f} over the teacher's {teacher.retained_acc:.3f}",
        f"judge-feature Fréchet distance on retained classes {cand.retained_fd:.3f} "
        f"over the teacher's multi-step sampler's {teacher.retained_fd:.3f}"))
    info = {**cand.as_dict(), **teacher.as_dict("teacher_"), **(ref.as_dict("reference_") if ref else {}),
            "forgotten": forgotten, "override": override, "retained": list(map(int, retained)),
            "n_per_class": n_per_class, "teacher_dir": str(teacher_dir)}
    plots = {}
    if report_dir is not None:
        plots["samples"] = str(plot_samples(cand_j, teach_j, Path(report_dir) / "diffusion_samples.png"))
    return Verdict(criteria=rows, info=info, plots=plots)


# Membership by the denoising loss (Carlini et al. 2023, "Extracting training data from diffusion models",
# §5: the loss at low noise levels separates members). Fixed before any model was scored: 12 timesteps
# evenly from 10 to 300 of 1000, one noise draw each, the same draws for every model compared.
MIA_TIMESTEPS = tuple(int(t) for t in np.linspace(10, 300, 12))


@torch.no_grad()
def denoising_losses(model_dir: Path, X: np.ndarray, y: np.ndarray, *, seed: int = SEED,
                     device: str = "cpu") -> np.ndarray:
    """Per-image ε-prediction MSE of the pipeline at `model_dir`, averaged over `MIA_TIMESTEPS`:
    (N,) float64 for images X (N, C·H·W) in [0, 1] and labels y (N,). Lower = more familiar."""
    pipe = class_diffusion.load_pipeline(Path(model_dir), device)
    x0 = torch.as_tensor(X, dtype=torch.float32).view(-1, *class_diffusion.image_shape(pipe.unet)) * 2 - 1
    c = torch.as_tensor(y, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(len(x0), dtype=torch.float64)
    for t_val in MIA_TIMESTEPS:
        eps = torch.randn(x0.shape, generator=gen)
        t = torch.full((len(x0),), t_val, dtype=torch.long)
        a, b = class_diffusion.alpha_sigma(pipe.scheduler, t)
        for i in range(0, len(x0), 512):
            sl = slice(i, i + 512)
            pred = pipe.unet((a[sl] * x0[sl] + b[sl] * eps[sl]).to(device), t[sl].to(device),
                             class_labels=c[sl].to(device)).sample.cpu()
            total[sl] += (pred - eps[sl]).pow(2).flatten(1).mean(1).double()
    return (total / len(MIA_TIMESTEPS)).numpy()


def verify_samples(candidate_dir: Path, original_dir: Path, judge_dir: Path, *, forget_ids: Sequence[str],
                   dataset: dict, thresholds: dict[str, float] | None = None, report_dir: Path | None = None,
                   n_per_class: int = N_PER_CLASS, device: str = "cpu") -> Verdict:
    """A diffusion model that forgot samples (a subject's images), not a class, against the model as
    trained (`original_dir`) and never-trained holdout images:
    - holdout_mia_auc: the candidate's denoising-loss membership AUC, forget vs holdout images, near 0.5
      (`verify.holdout`);
    - retained_acc_ratio / retained_fd_ratio: the judge's accuracy and Fréchet distance on generations of
      every class, over the original's (the same gates as for class forgetting)."""
    th = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    data = get_dataset(dataset)
    holdout = data.ids_in("holdout")
    if not holdout:
        raise ValueError("verifying forgotten samples of a diffusion model needs holdout images")
    Xf, yf = data.take(list(forget_ids))
    Xh, yh = data.take(holdout)
    forget_loss = denoising_losses(candidate_dir, Xf, yf, device=device)
    holdout_loss = denoising_losses(candidate_dir, Xh, yh, device=device)
    original_forget = denoising_losses(original_dir, Xf, yf, device=device)
    _, real_features = judge(judge_dir, data.X, device)
    classes = list(range(data.num_classes))

    def of(model_dir: Path) -> tuple[Judged, float, float]:
        j = judged_generations(str(Path(model_dir).resolve()), str(Path(judge_dir).resolve()), n_per_class, SEED,
                               device)
        return j, float((j.predicted == j.labels).mean()), frechet_distance(j.features, real_features)

    cand_j, cand_acc, cand_fd = of(candidate_dir)
    orig_j, orig_acc, orig_fd = of(original_dir)
    rows = [
        mia_criterion(-forget_loss, -holdout_loss, th),
        criterion("retained_acc_ratio", cand_acc / orig_acc, ">=", th["retained_acc_ratio"],
                  detail=f"judge accuracy on generations of every class {cand_acc:.3f} over the original's "
                         f"{orig_acc:.3f}"),
        criterion("retained_fd_ratio", cand_fd / orig_fd, "<=", th["retained_fd_ratio"],
                  detail=f"judge-feature Fréchet distance {cand_fd:.3f} over the original's {orig_fd:.3f}"),
    ]
    info = {"forget_loss": float(forget_loss.mean()), "holdout_loss": float(holdout_loss.mean()),
            "original_forget_loss": float(original_forget.mean()), "forget_samples": len(forget_ids),
            "holdout_samples": len(holdout), "retained": classes, "original_dir": str(original_dir),
            "mia_timesteps": list(MIA_TIMESTEPS), "not_applicable": {
                "forget_rate": "samples, not a class, were forgotten: every class is still generated"}}
    plots = {}
    if report_dir is not None:
        plots["samples"] = str(plot_samples(cand_j, orig_j, Path(report_dir) / "diffusion_samples.png"))
    return Verdict(criteria=rows, info=info, plots=plots)


def plot_samples(candidate: Judged, teacher: Judged, path: Path, per_class: int = 8) -> Path:
    """Rows: classes; left block the teacher's samples, right block the candidate's."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = np.unique(candidate.labels)
    channels = 1 if candidate.images.shape[1] == math.isqrt(candidate.images.shape[1]) ** 2 else 3
    side = math.isqrt(candidate.images.shape[1] // channels)

    def picture(img: np.ndarray) -> np.ndarray:
        return img.reshape(side, side) if channels == 1 else img.reshape(3, side, side).mean(0)

    def grid(j: Judged) -> np.ndarray:
        rows = [np.hstack([picture(img) for img in j.images[j.labels == c][:per_class]]) for c in classes]
        return np.vstack(rows)

    fig, axes = plt.subplots(1, 2, figsize=(8, 5.5))
    for ax, j, title in zip(axes, (teacher, candidate), ("teacher (multi-step)", "candidate"), strict=True):
        ax.imshow(grid(j), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title)
        ax.set_yticks(np.arange(len(classes)) * side + (side - 1) / 2, [str(c) for c in classes])
        ax.set_xticks([])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
