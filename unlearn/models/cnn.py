"""A small convolutional classifier for 1×8×8 digits, split into an `extractor` and a `head`.

LAF needs that split: it adapts the extractor's representation (the 256-d output of
`fc1`, as in LAF's official CNN) and leaves the head alone. Layout, after LAF's code and
scaled to 8×8 inputs: Conv3×3(1→16)–pool–Conv3×3(16→32)–pool → 128 features → fc1 (256,
linear: the embedding) → head Linear(256→128)–Linear(128→C), no non-linearity in between.
Saving and prediction reuse the MLP module's helpers. Training is `mlp.fit`'s minibatch Adam
plus optional label smoothing (`train.label_smoothing`), which the corrective zoo models use:
a network trained to zero loss has near-zero, heavy-tailed per-sample gradients, and SSD's
Fisher importances (squared gradients of the cross-entropy) then rank parameters by noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unlearn.artifacts import load_tensors, read_meta
from unlearn.contracts import Progress, no_progress
from unlearn.models.mlp import fit, predictor, save, train_with


class CNN(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, embed_dim: int = 256) -> None:
        super().__init__()
        channels, height, width = image_shape
        self.image_shape = (channels, height, width)
        self.extractor = nn.Sequential(
            nn.Unflatten(1, self.image_shape),
            nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * (height // 4) * (width // 4), embed_dim),  # fc1: the representation
        )
        self.head = nn.Sequential(nn.Linear(embed_dim, 128), nn.Linear(128, num_classes))  # fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.extractor(x))


def build(meta: dict[str, Any]) -> CNN:
    return CNN(tuple(meta.get("image_shape", (1, 8, 8))), meta["num_classes"], meta.get("embed_dim", 256))


def train(meta: dict[str, Any], X: np.ndarray, y: np.ndarray, out_dir: Path, *, device: str = "cpu",
          progress: Progress = no_progress) -> None:
    train_with(build, meta, X, y, out_dir, device=device, progress=progress, epochs=40, weight_decay=1e-4)


def load_module(model_dir: Path, device: str = "cpu") -> tuple[CNN, dict[str, Any]]:
    """The torch module itself, for methods that change its weights (LAF, SSD, fine-tuning)."""
    meta = read_meta(model_dir)
    model = build(meta)
    model.load_state_dict(load_tensors(model_dir, device=device))
    return model.to(device).eval(), meta


def load(model_dir: Path, device: str = "cpu"):
    model, _ = load_module(model_dir, device)
    return predictor(model, device)


__all__ = ["CNN", "build", "fit", "load", "load_module", "save", "train"]
