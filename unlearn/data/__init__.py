"""Data sets the project makes itself: nothing is downloaded.

A data set is named by a small JSON-able spec stored in each artifact's `unlearn.json`,
so any version can rebuild exactly the data it was trained on. A new data set is one
module plus one line in `_DATASETS` (or an entry point of the group "unlearn.datasets").
"""

from __future__ import annotations

from typing import Any

from unlearn.data.tabular import TabularDataset
from unlearn.plugins import Registry

_DATASETS: dict[str, str] = {
    "digits": "unlearn.data.digits:load",
    "digits-backdoor": "unlearn.data.poison:load_backdoor",
    "digits-swap": "unlearn.data.poison:load_swap",
    "synthetic": "unlearn.data.synthetic:load",
    "shapes": "unlearn.data.shapes:load",
    "records": "unlearn.data.records:load_tabular",  # a team's own records (unlearn/data/records.py)
}


_READERS = Registry("data set", "unlearn.datasets", _DATASETS)


def get_dataset(spec: dict[str, Any]) -> TabularDataset:
    """The data set `spec` names ({"name": …, its reader's keyword arguments}): this package's readers,
    then installed entry points of the group "unlearn.datasets". Raises KeyError for an unknown name."""
    reader = _READERS.load(str(spec.get("name")))
    return reader(**{k: v for k, v in spec.items() if k != "name"})


__all__ = ["TabularDataset", "get_dataset"]
