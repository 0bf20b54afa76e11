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

Predictor = Callable[[np.ndarray], np.ndarray]

ARCHS: dict[str, str] = {
    "mlp": "unlearn.models.mlp",
    "cnn": "unlearn.models.cnn",
    "analytic": "unlearn.models.analytic",
}


def get_arch(name: str) -> ModuleType:
    if name not in ARCHS:
        raise KeyError(f"unknown classifier architecture {name!r}; known: {', '.join(sorted(ARCHS))}")
    return importlib.import_module(ARCHS[name])
