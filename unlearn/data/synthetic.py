"""A generated classification data set, large enough to show how unlearning scales with N.

scikit-learn's `make_classification` (Guyon's hypercube clusters) with a fixed seed, so any
version can rebuild exactly the rows it was trained on. `n` counts the training samples;
the holdout (never trained on: membership-inference negatives) and test splits come on top.
Every subject owns about `samples_per_subject` samples, as in the digits data set.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from sklearn.datasets import make_classification

from unlearn.data.tabular import TabularDataset, random_splits


@lru_cache(maxsize=4)  # generating 120,000 rows takes seconds; run, retrain and verify each ask
def load(n: int = 100_000, seed: int = 0, n_holdout: int = 10_000, n_test: int = 10_000,
         n_features: int = 32, num_classes: int = 10, samples_per_subject: int = 5) -> TabularDataset:
    total = n + n_holdout + n_test
    X, y = make_classification(n_samples=total, n_features=n_features, n_informative=n_features // 2,
                               n_redundant=n_features // 4, n_classes=num_classes, n_clusters_per_class=2,
                               class_sep=1.5, flip_y=0.01, random_state=seed)
    split, owner = random_splits(np.random.default_rng(seed), total, n, n_holdout, samples_per_subject)
    subjects = [f"subject-{o:06d}" for o in owner]
    ids = [f"synthetic-{i:06d}" for i in range(total)]
    return TabularDataset(ids=ids, X=X.astype(np.float32), y=y.astype(np.int64), subjects=subjects,
                          split=split, num_classes=num_classes,
                          extra={"name": "synthetic", "n": n, "seed": seed, "n_holdout": n_holdout,
                                 "n_test": n_test, "n_features": n_features, "num_classes": num_classes})
