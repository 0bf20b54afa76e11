"""Data sets the project makes itself: nothing is downloaded.

A data set is named by a small JSON-able spec stored in each artifact's `unlearn.json`,
so any version can rebuild exactly the data it was trained on. A new data set is one
module plus one line in `_DATASETS`.
"""

from __future__ import annotations

import importlib
from typing import Any

from unlearn.data.tabular import TabularDataset

_DATASETS: dict[str, str] = {
    "digits": "unlearn.data.digits:load",
    "digits-backdoor": "unlearn.data.poison:load_backdoor",
    "digits-swap": "unlearn.data.poison:load_swap",
    "synthetic": "unlearn.data.synthetic:load",
}


def get_dataset(spec: dict[str, Any]) -> TabularDataset:
    name = spec.get("name")
    if name not in _DATASETS:
        raise KeyError(f"unknown data set {name!r}; known: {', '.join(sorted(_DATASETS))}")
    module, fn = _DATASETS[name].split(":")
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    return getattr(importlib.import_module(module), fn)(**kwargs)


__all__ = ["TabularDataset", "get_dataset"]
