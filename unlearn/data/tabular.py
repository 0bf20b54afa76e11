"""A labelled table of samples with stable ids, a subject each, and a train/holdout/test split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from unlearn.contracts import SampleRecord


def random_splits(rng: np.random.Generator, total: int, n_train: int, n_holdout: int,
                  samples_per_subject: int) -> tuple[np.ndarray, np.ndarray]:
    """A random train / holdout / test split of `total` samples, and a random owner (subject number)
    for each sample, `samples_per_subject` samples apiece."""
    perm = rng.permutation(total)
    split = np.empty(total, dtype=object)
    split[perm[:n_train]] = "train"
    split[perm[n_train:n_train + n_holdout]] = "holdout"
    split[perm[n_train + n_holdout:]] = "test"
    owner = rng.permutation(total) // samples_per_subject
    return split, owner


@dataclass
class TabularDataset:
    ids: list[str]
    X: np.ndarray  # (N, d) float32
    y: np.ndarray  # (N,) int64
    subjects: list[str]
    split: np.ndarray  # (N,) of "train" | "holdout" | "test"
    num_classes: int
    image_shape: tuple[int, ...] | None = None  # e.g. (1, 8, 8) for digits
    extra: dict[str, Any] = field(default_factory=dict)
    captions: list[str] | None = None  # (N,) text of each sample, for text-conditioned models

    @cached_property
    def index(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.ids)}

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        idx = self.index
        try:
            return np.fromiter((idx[s] for s in ids), dtype=np.int64, count=len(ids))
        except KeyError as exc:
            raise KeyError(f"sample {exc.args[0]!r} is not in data set") from None

    def take(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        r = self.rows(ids)
        return self.X[r], self.y[r]

    def ids_in(self, split: str) -> list[str]:
        return [s for s, sp in zip(self.ids, self.split, strict=True) if sp == split]

    def records(self) -> list[SampleRecord]:
        """Train and holdout samples; test samples are not addressable by requests."""
        captions = self.captions or [None] * len(self.ids)
        return [SampleRecord(s, subj, int(lbl), str(sp), caption=cap)
                for s, subj, lbl, sp, cap in zip(self.ids, self.subjects, self.y, self.split, captions, strict=True)
                if sp != "test"]
