"""The demo zoo: small models the project trains itself, cached under the data directory.

Each entry names a builder `build(out_dir, *, device, progress)` that writes a complete
artifact folder. `ensure(name)` builds once and reuses the cache afterwards. A new zoo
model is one builder function plus one line in `ZOO`.
"""

from __future__ import annotations

import importlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from unlearn.artifacts import read_meta
from unlearn.data import get_dataset
from unlearn.families.base import Progress, no_progress
from unlearn.models import get_arch


@dataclass(frozen=True)
class ZooEntry:
    family: str
    builder: str  # "module:function"
    description: str


ZOO: dict[str, ZooEntry] = {
    "digits-mlp": ZooEntry("classifier", "unlearn.zoo:build_digits_mlp",
                           "MLP on scikit-learn digits; every sample owned by a synthetic subject"),
    "digits-diffusion": ZooEntry("diffusion", "unlearn.zoo:build_digits_diffusion",
                                 "class-conditional diffusers UNet2DModel (DDPM) on 8x8 digits: SFD's teacher"),
    "digits-judge": ZooEntry("classifier", "unlearn.zoo:build_digits_judge",
                             "MLP that judges generated digits for the diffusion verifier; no method uses it"),
}


def build_digits_mlp(out_dir: Path, *, device: str = "cpu", progress: Progress = no_progress) -> None:
    meta = {"family": "classifier", "model": "digits-mlp", "arch": "mlp", "seed": 0,
            "dataset": {"name": "digits", "seed": 0}, "in_features": 64, "hidden": 128, "num_classes": 10,
            "train": {"epochs": 60, "lr": 1e-3, "batch_size": 64}}
    train_on_split(meta, out_dir, device=device, progress=progress)


def build_digits_diffusion(out_dir: Path, *, device: str = "cpu", progress: Progress = no_progress) -> None:
    from unlearn.families.diffusion import train_teacher_artifact

    meta = {"family": "diffusion", "model": "digits-diffusion", "sampler": "multistep", "seed": 0,
            "dataset": {"name": "digits", "seed": 0}, "judge": "digits-judge",
            "train": {"steps": 1500, "lr": 2e-3, "batch_size": 64, "ema": 0.995}}
    train_teacher_artifact(meta, get_dataset(meta["dataset"]).ids_in("train"), out_dir, device=device,
                           progress=progress)


def build_digits_judge(out_dir: Path, *, device: str = "cpu", progress: Progress = no_progress) -> None:
    meta = {"family": "classifier", "model": "digits-judge", "arch": "mlp", "seed": 1,
            "dataset": {"name": "digits", "seed": 0}, "in_features": 64, "hidden": 64, "num_classes": 10,
            "train": {"epochs": 100, "lr": 1e-3, "batch_size": 64, "weight_decay": 1e-4}}
    train_on_split(meta, out_dir, device=device, progress=progress)


def train_on_split(meta: dict, out_dir: Path, *, device: str = "cpu", progress: Progress = no_progress) -> None:
    """Train a classifier-family model from scratch on its data set's whole train split."""
    data = get_dataset(meta["dataset"])
    X, y = data.take(data.ids_in("train"))
    get_arch(meta["arch"]).train(meta, X, y, out_dir, device=device, progress=progress)


def ensure(name: str, zoo_dir: Path, *, device: str = "cpu", progress: Progress = no_progress) -> Path:
    """The cached artifact folder of zoo model `name`, built first if missing."""
    if name not in ZOO:
        raise KeyError(f"unknown zoo model {name!r}; known: {', '.join(sorted(ZOO))}")
    final = Path(zoo_dir) / name
    if (final / "unlearn.json").exists():
        return final
    tmp = Path(zoo_dir) / f".{name}.building-{time.time_ns()}"
    module, fn = ZOO[name].builder.split(":")
    builder: Callable[..., None] = getattr(importlib.import_module(module), fn)
    try:
        builder(tmp, device=device, progress=progress)
        read_meta(tmp)  # a builder must leave a described artifact
        if not final.exists():
            tmp.rename(final)  # atomic on one filesystem: concurrent builders never see half a model
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
