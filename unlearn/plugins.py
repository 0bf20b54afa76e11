"""Registries by name, filled from the package's own table and from installed entry points.

A team adds a method, a model family, a criterion, an architecture or a data reader from its own
package by declaring an entry point (`[project.entry-points."unlearn.methods"] mine = "pkg.mod:SPEC"`);
the service finds it without a change to this project. Imports nothing of the project.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

# "unlearn.architectures" is the documented group of classifier architectures; "unlearn.archs" its older name.
GROUPS = ("unlearn.methods", "unlearn.families", "unlearn.criteria", "unlearn.architectures", "unlearn.archs",
          "unlearn.datasets")


@lru_cache(maxsize=len(GROUPS))
def entry_point_targets(group: str) -> dict[str, str]:
    """name → "module:attribute" for every installed entry point of `group` (read once per process)."""
    return {ep.name: ep.value for ep in entry_points(group=group)}


def merged(own: dict[str, str], group: str) -> dict[str, str]:
    """`own` (this package's table, which may have had plugins registered into it) over the entry points:
    a name the package defines is never replaced by an installed plugin."""
    return {**entry_point_targets(group), **own}


def load_entry_points() -> dict[str, str]:
    """Import every installed plugin of every group once, as a worker does at start, so that a broken
    plugin shows in the worker's log at start rather than in the first job that needs it.
    Returns "group:name" → the import error, for each plugin that failed (empty: all loaded)."""
    failed = {}
    for group in GROUPS:
        for name, target in entry_point_targets(group).items():
            module, _, attr = target.partition(":")
            try:
                obj = importlib.import_module(module)
                if attr:
                    getattr(obj, attr)
            except Exception as exc:  # noqa: BLE001 - any plugin fault is reported, none stops the worker
                failed[f"{group}:{name}"] = f"{type(exc).__name__}: {exc}"
    return failed


class UnknownComponent(KeyError):
    """A name no registry knows (data set, architecture, family, method): it cannot heal by retrying, so
    a job that meets one fails at once. A KeyError still, for callers that catch that."""

    def __str__(self) -> str:  # KeyError's own quotes the message as if it were a key
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Registry:
    """Things of one kind by name: this package's table `own` ("module:attribute" each, imported on
    first use so that one family's run never imports another's code), then installed entry points."""

    kind: str  # for messages: "method", "model family", "criterion"
    group: str  # the entry-point group
    own: dict[str, str]

    def register(self, name: str, target: str) -> None:
        """Add `name` from outside the package; raises ValueError for a target not "module:attribute"."""
        if ":" not in target:
            raise ValueError(f"{self.kind} target {target!r} must look like 'module:attribute'")
        self.own[name] = target

    def names(self) -> list[str]:
        return sorted(merged(self.own, self.group))

    def load(self, name: str) -> Any:
        """The object registered as `name`; raises UnknownComponent naming the known ones for an unknown name."""
        known = merged(self.own, self.group)
        if name not in known:
            raise UnknownComponent(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(known)) or 'none'}")
        module, attr = known[name].split(":")
        return getattr(importlib.import_module(module), attr)


__all__ = ["GROUPS", "Registry", "UnknownComponent", "entry_point_targets", "load_entry_points", "merged"]
