"""Digits with a share of the training split manipulated: the corrective-unlearning scenarios.

- `load_backdoor`: BadNets-style poisoning (as in the corrective-unlearning benchmark): a
  small bright pixel pattern, and the label set to a target class.
- `load_swap`: interclass confusion: labels of two classes swapped in part of their samples.
- `load_noisy`: LAF's noisy-label task: part of some classes relabelled at random.

Only train samples are manipulated; holdout and test stay clean, so the verifier can paste
the trigger onto clean test images. `extra` records what was done: `manipulated_ids` (the
set S_m a corrective request flags a subset of), `clean_y` (the true labels of every row)
and the scenario's parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from unlearn.data.digits import load as load_digits
from unlearn.data.tabular import TabularDataset


def apply_trigger(X: np.ndarray, image_shape: Sequence[int], trigger: dict[str, Any]) -> np.ndarray:
    """A copy of the flat images X with the trigger's pixels (row, column) set to its value, every channel."""
    c, h, w = image_shape
    imgs = X.reshape(len(X), c, h, w).copy()
    rows, cols = zip(*trigger["pixels"], strict=True)
    imgs[:, :, list(rows), list(cols)] = trigger["value"]
    return imgs.reshape(len(X), -1)


def _manipulated(data: TabularDataset, name: str, rows: np.ndarray, new_y: np.ndarray,
                 info: dict[str, Any], seed: int) -> TabularDataset:
    clean_y = data.y.copy()
    data.y = data.y.copy()
    data.y[rows] = new_y
    data.extra = {"name": name, "seed": seed, "manipulated_ids": [data.ids[r] for r in rows],
                  "clean_y": clean_y, **info}
    return data


def _train_rows(data: TabularDataset, rng: np.random.Generator, classes: Sequence[int],
                fraction: float) -> np.ndarray:
    pool = np.flatnonzero((data.split == "train") & np.isin(data.y, list(classes)))
    return np.sort(rng.choice(pool, size=int(round(fraction * len(pool))), replace=False))


# Rows 4–7 of the last column: digits almost never ink it, so the pattern is a trigger the network
# can tell from a digit rather than learn by memorising the poisoned samples (benchmarks/results/defaults_notes.md).
EDGE_LINE = ((4, 7), (5, 7), (6, 7), (7, 7))


def load_backdoor(seed: int = 0, fraction: float = 0.04, target: int = 0,
                  trigger_pixels: Sequence[Sequence[int]] = EDGE_LINE, trigger_value: float = 1.0) -> TabularDataset:
    """`fraction` of the train samples of every class but `target` get the trigger and label `target`.

    4% (45 samples) sits near the corrective benchmark's 100–1000 of CIFAR-10's 50,000 (0.2–2%)
    while still planting a backdoor in a 1,257-sample training split."""
    data = load_digits(seed=seed)
    rng = np.random.default_rng(seed + 1)
    others = [c for c in range(data.num_classes) if c != target]
    rows = _train_rows(data, rng, others, fraction)
    trigger = {"pixels": [list(p) for p in trigger_pixels], "value": trigger_value}
    data.X = data.X.copy()
    data.X[rows] = apply_trigger(data.X[rows], data.image_shape, trigger)
    info = {"manipulation": "backdoor", "target": target, "trigger": trigger, "fraction": fraction}
    return _manipulated(data, "digits-backdoor", rows, np.full(len(rows), target), info, seed)


def load_swap(seed: int = 0, classes: Sequence[int] = (1, 7), fraction: float = 0.4) -> TabularDataset:
    """`fraction` of the train samples of each of the two classes get the other class's label."""
    data = load_digits(seed=seed)
    rng = np.random.default_rng(seed + 1)
    a, b = classes
    rows = np.sort(np.r_[_train_rows(data, rng, [a], fraction), _train_rows(data, rng, [b], fraction)])
    new_y = np.where(data.y[rows] == a, b, a)
    info = {"manipulation": "swap", "classes": [a, b], "fraction": fraction}
    return _manipulated(data, "digits-swap", rows, new_y, info, seed)


def load_noisy(seed: int = 0, classes: Sequence[int] = (0, 1, 2, 3, 4), fraction: float = 0.6) -> TabularDataset:
    """LAF's noisy-label task: `fraction` of the given classes relabelled uniformly among the
    other classes (LAF's code draws from 0..8, leaving 9 out, which looks unintended; we use 0..9)."""
    data = load_digits(seed=seed)
    rng = np.random.default_rng(seed + 1)
    rows = _train_rows(data, rng, classes, fraction)
    shift = rng.integers(1, data.num_classes, size=len(rows))  # never the true label
    new_y = (data.y[rows] + shift) % data.num_classes
    info = {"manipulation": "noisy", "classes": list(classes), "fraction": fraction}
    return _manipulated(data, "digits-noisy", rows, new_y, info, seed)


__all__ = ["EDGE_LINE", "apply_trigger", "load_backdoor", "load_noisy", "load_swap"]


def flagged_subset(data: TabularDataset, share: float, seed: int = 0) -> list[str]:
    """The part of the manipulated samples an investigation found: `share` of them, drawn with `seed`.
    Corrective requests flag these; the rest of the manipulation stays unknown."""
    manipulated = data.extra["manipulated_ids"]
    rng = np.random.default_rng(seed)
    return [str(s) for s in rng.choice(manipulated, size=round(share * len(manipulated)), replace=False)]
