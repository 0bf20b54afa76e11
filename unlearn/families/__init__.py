"""Model families by name. A new family is one module plus one line in `_FAMILIES`, or an entry point
in the group "unlearn.families" of another package, or `register_family` at run time."""

from __future__ import annotations

import importlib

from unlearn.contracts import Progress, SampleRecord, Scope, no_progress
from unlearn.families.base import Family
from unlearn.plugins import merged

_FAMILIES: dict[str, str] = {
    "classifier": "unlearn.families.classifier:ClassifierFamily",
    "diffusion": "unlearn.families.diffusion:DiffusionFamily",
    "lm": "unlearn.families.lm:LMFamily",
}
_cache: dict[str, Family] = {}


def register_family(name: str, target: str) -> None:
    """Add a family ("module:attribute" of a `Family` subclass) from outside the package."""
    if ":" not in target:
        raise ValueError(f"family target {target!r} must look like 'module:attribute'")
    _FAMILIES[name] = target
    _cache.pop(name, None)


def family_names() -> list[str]:
    return sorted(merged(_FAMILIES, "unlearn.families"))


def get_family(name: str) -> Family:
    """The family registered as `name` (one instance per process). Raises KeyError for an unknown name."""
    known = merged(_FAMILIES, "unlearn.families")
    if name not in known:
        raise KeyError(f"unknown model family {name!r}; known: {', '.join(sorted(known))}")
    if name not in _cache:
        module, cls = known[name].split(":")
        _cache[name] = getattr(importlib.import_module(module), cls)()
    return _cache[name]


__all__ = ["Family", "Progress", "SampleRecord", "Scope", "family_names", "get_family", "no_progress",
           "register_family"]
