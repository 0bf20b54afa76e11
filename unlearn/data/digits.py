"""scikit-learn's digits (ships with the package), each sample owned by a synthetic subject.

Split: 70% train, 15% holdout (never trained on: the membership-inference negatives),
15% test. Every subject owns about 5 samples, so a request by subject fans out to a few.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from unlearn.data.tabular import TabularDataset, random_splits


def load(seed: int = 0, samples_per_subject: int = 5) -> TabularDataset:
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    n = len(y)
    split, owner = random_splits(np.random.default_rng(seed), n, int(0.7 * n), int(0.15 * n), samples_per_subject)
    subjects = [f"subject-{o:04d}" for o in owner]
    ids = [f"digits-{i:04d}" for i in range(n)]
    return TabularDataset(ids=ids, X=X, y=y, subjects=subjects, split=split, num_classes=10,
                          image_shape=(1, 8, 8), extra={"name": "digits", "seed": seed})
