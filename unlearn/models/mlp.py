"""A small multilayer perceptron classifier, trained with Adam. The digits demo's default model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unlearn.artifacts import load_tensors, read_meta, save_tensors, write_meta
from unlearn.contracts import Progress, no_progress


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build(meta: dict[str, Any]) -> MLP:
    return MLP(meta["in_features"], meta.get("hidden", 128), meta["num_classes"])


def fit(model: nn.Module, X: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, batch_size: int,
        seed: int, device: str = "cpu", weight_decay: float = 0.0, label_smoothing: float = 0.0,
        optimizer: type[torch.optim.Optimizer] = torch.optim.Adam, progress: Progress = no_progress) -> nn.Module:
    """Minibatch `optimizer` (Adam; AdamW for Hugging Face models) on (optionally label-smoothed)
    cross-entropy; the shuffling order is fixed by `seed`."""
    model.to(device).train()
    opt = optimizer(model.parameters(), lr=lr, weight_decay=weight_decay)
    Xt = torch.as_tensor(X, dtype=torch.float32, device=device)
    yt = torch.as_tensor(y, dtype=torch.long, device=device)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        perm = torch.randperm(len(Xt), generator=gen).to(device)
        for i in range(0, len(Xt), batch_size):
            b = perm[i:i + batch_size]
            loss = nn.functional.cross_entropy(model(Xt[b]), yt[b], label_smoothing=label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
        progress((epoch + 1) / epochs, f"epoch {epoch + 1}/{epochs}")
    return model.eval()


def train(meta: dict[str, Any], X: np.ndarray, y: np.ndarray, out_dir: Path, *, device: str = "cpu",
          progress: Progress = no_progress) -> None:
    train_with(build, meta, X, y, out_dir, device=device, progress=progress)


def train_with(builder: Any, meta: dict[str, Any], X: np.ndarray, y: np.ndarray, out_dir: Path, *,
               device: str = "cpu", progress: Progress = no_progress, epochs: int = 60,
               weight_decay: float = 0.0) -> None:
    """Seed, build, fit with `meta["train"]` over the architecture's defaults, save: every
    torch architecture trains this way."""
    torch.manual_seed(meta["seed"])
    model = builder(meta)
    t = meta.get("train", {})
    fit(model, X, y, epochs=t.get("epochs", epochs), lr=t.get("lr", 1e-3), batch_size=t.get("batch_size", 64),
        seed=meta["seed"], device=device, weight_decay=t.get("weight_decay", weight_decay),
        label_smoothing=t.get("label_smoothing", 0.0), progress=progress)
    save(model, meta, out_dir)


def save(model: nn.Module, meta: dict[str, Any], out_dir: Path) -> None:
    save_tensors(out_dir, model.state_dict())
    write_meta(out_dir, meta)


def load_module(model_dir: Path, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The torch module itself, for methods that change its weights (LAF, SSD, fine-tuning)."""
    meta = read_meta(model_dir)
    model = build(meta)
    model.load_state_dict(load_tensors(model_dir, device=device))
    return model.to(device).eval(), meta


def predictor(model: nn.Module, device: str = "cpu"):
    @torch.no_grad()
    def predict(X: np.ndarray) -> np.ndarray:
        out = model(torch.as_tensor(X, dtype=torch.float32, device=device))
        return torch.log_softmax(out.double(), dim=1).cpu().numpy()
    return predict


def load(model_dir: Path, device: str = "cpu"):
    model, _ = load_module(model_dir, device)
    return predictor(model, device)
