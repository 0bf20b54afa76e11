"""Verifier criteria beyond a family's own, by name: one file plus one line in `CRITERIA` (or an entry
point in the group "unlearn.criteria", or `register_criterion` at run time).

A family's verifier computes the criteria it was built around (MUSE's C1–C4 for language models,
their analogues for classifiers and diffusion models). A further criterion is a `CriterionSpec`:
the families it applies to, the gate defaults it reads, and a `check` that scores one candidate
from the same evidence the family's verifier saw. The service appends it to the verdict, so a
failing criterion fails the candidate like any built-in one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from unlearn.contracts import Scope
from unlearn.plugins import Registry
from unlearn.verify.verdict import Criterion


@dataclass(frozen=True)
class Evidence:
    """What a criterion may read about one candidate (artifact folders; ids of the model's samples)."""

    family: str
    candidate_dir: Path
    reference_dir: Path | None  # the exact retrain on `retain_ids`; None where the family gates without one
    forget_ids: Sequence[str]  # every sample forgotten in the lineage so far
    retain_ids: Sequence[str]
    scope: Scope
    thresholds: dict[str, float]  # the gates in force: defaults, the method's own, then overrides
    device: str = "cpu"


@dataclass(frozen=True)
class CriterionSpec:
    name: str
    families: tuple[str, ...]  # "*" for every family
    check: Callable[[Evidence], Criterion]
    gate_defaults: dict[str, float] = field(default_factory=dict)  # joins the family's gate defaults
    description: str = ""


# name → "module:attribute" of a CriterionSpec, imported on first use.
CRITERIA: dict[str, str] = {}


_REGISTRY = Registry("criterion", "unlearn.criteria", CRITERIA)


def register_criterion(name: str, target: str) -> None:
    """Add a criterion ("module:attribute" of a CriterionSpec), e.g. from a plugin."""
    _REGISTRY.register(name, target)


def get_criterion(name: str) -> CriterionSpec:
    return _REGISTRY.load(name)


def criteria_for(family: str) -> list[CriterionSpec]:
    """The registered criteria (this package's, then installed entry points') that apply to `family`."""
    specs = [get_criterion(n) for n in _REGISTRY.names()]
    return [s for s in specs if family in s.families or "*" in s.families]


__all__ = ["CRITERIA", "CriterionSpec", "Evidence", "criteria_for", "get_criterion", "register_criterion"]
