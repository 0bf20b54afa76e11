"""Model families by name. A new family is one module plus one line in `_FAMILIES`, or an entry point
in the group "unlearn.families" of another package, or `register_family` at run time."""

from __future__ import annotations

from unlearn.contracts import Progress, SampleRecord, Scope, no_progress
from unlearn.families.base import Family
from unlearn.plugins import Registry

_FAMILIES: dict[str, str] = {
    "classifier": "unlearn.families.classifier:ClassifierFamily",
    "diffusion": "unlearn.families.diffusion:DiffusionFamily",
    "lm": "unlearn.families.lm:LMFamily",
}
_cache: dict[str, Family] = {}


_REGISTRY = Registry("model family", "unlearn.families", _FAMILIES)


def register_family(name: str, target: str) -> None:
    """Add a family ("module:attribute" of a `Family` subclass) from outside the package."""
    _REGISTRY.register(name, target)
    _cache.pop(name, None)


def family_names() -> list[str]:
    return _REGISTRY.names()


def get_family(name: str) -> Family:
    """The family registered as `name` (one instance per process). Raises KeyError for an unknown name."""
    if name not in _cache:
        _cache[name] = _REGISTRY.load(name)()
    return _cache[name]


__all__ = ["Family", "Progress", "SampleRecord", "Scope", "family_names", "get_family", "no_progress",
           "register_family"]
