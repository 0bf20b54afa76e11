"""Registries by name, filled from the package's own table and from installed entry points.

A team adds a method, a model family, a criterion, an architecture or a data reader from its own
package by declaring an entry point (`[project.entry-points."unlearn.methods"] mine = "pkg.mod:SPEC"`);
the service finds it without a change to this project. Imports nothing of the project.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points

GROUPS = ("unlearn.methods", "unlearn.families", "unlearn.criteria", "unlearn.archs", "unlearn.datasets")


@lru_cache(maxsize=len(GROUPS))
def entry_point_targets(group: str) -> dict[str, str]:
    """name → "module:attribute" for every installed entry point of `group` (read once per process)."""
    return {ep.name: ep.value for ep in entry_points(group=group)}


def merged(own: dict[str, str], group: str) -> dict[str, str]:
    """`own` (this package's table, which may have had plugins registered into it) over the entry points:
    a name the package defines is never replaced by an installed plugin."""
    return {**entry_point_targets(group), **own}


__all__ = ["GROUPS", "entry_point_targets", "merged"]
