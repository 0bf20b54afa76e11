"""Network architectures for the classifier family, by name (`unlearn.json["arch"]`).

An architecture module exposes:
    train(meta, X, y, out_dir, *, device, progress) -> None   # from scratch, seeded by meta["seed"]
    load(model_dir, device) -> Predictor                       # log-probabilities, (N, C) float64
A new architecture is one module plus one line in `ARCHS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

import numpy as np

from unlearn.plugins import UnknownComponent, merged

Predictor = Callable[[np.ndarray], np.ndarray]

ARCHS: dict[str, str] = {
    "mlp": "unlearn.models.mlp",
    "cnn": "unlearn.models.cnn",
    "analytic": "unlearn.models.analytic",
    "hf-image": "unlearn.models.hf_image",  # a team's Hugging Face image classifier folder
}


def get_arch(name: str) -> ModuleType:
    """The architecture module `name`: this package's `ARCHS`, then installed entry points of the group
    "unlearn.archs" (whose value names a module). Raises KeyError for an unknown name."""
    known = merged(ARCHS, "unlearn.archs")
    if name not in known:
        raise UnknownComponent(f"unknown classifier architecture {name!r}; known: {', '.join(sorted(known))}")
    return importlib.import_module(known[name])
