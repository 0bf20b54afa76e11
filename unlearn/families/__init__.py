"""Model families by name. A new family is one module plus one line in `_FAMILIES`."""

from __future__ import annotations

import importlib

from unlearn.families.base import Family, Progress, SampleRecord, Scope, no_progress

_FAMILIES: dict[str, str] = {
    "classifier": "unlearn.families.classifier:ClassifierFamily",
    "diffusion": "unlearn.families.diffusion:DiffusionFamily",
    "lm": "unlearn.families.lm:LMFamily",
}
_cache: dict[str, Family] = {}


def get_family(name: str) -> Family:
    if name not in _FAMILIES:
        raise KeyError(f"unknown model family {name!r}; known: {', '.join(sorted(_FAMILIES))}")
    if name not in _cache:
        module, cls = _FAMILIES[name].split(":")
        _cache[name] = getattr(importlib.import_module(module), cls)()
    return _cache[name]


__all__ = ["Family", "Progress", "SampleRecord", "Scope", "get_family", "no_progress"]
