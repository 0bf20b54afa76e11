"""The method contract: one function from (base model, forget set, …) to a candidate model.

A method is one file under `unlearn/methods/` that exposes `run(task) -> dict` and is
named in `unlearn.methods.METHODS`. The service calls it with an `UnlearnTask`; the
method writes a complete artifact folder (same layout as the base) into `task.out_dir`
and returns a small dict of facts about the run (parameters used, steps, timings) that
the registry stores with the version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearn.families.base import Progress, Scope, no_progress


@dataclass
class UnlearnTask:
    family: str
    base_dir: Path  # artifact folder of the base version; read only
    out_dir: Path  # empty folder for the candidate artifact
    forget_ids: list[str]  # samples to forget (union of the coalesced requests)
    retain_ids: list[str]  # samples the candidate must still hold; ACU must not read them
    scope: Scope = field(default_factory=Scope)
    params: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    progress: Progress = no_progress


class MethodError(ValueError):
    """The request cannot be served by this method (bad input, not a model it applies to)."""


@dataclass(frozen=True)
class MethodSpec:
    name: str
    families: tuple[str, ...]
    run: Callable[[UnlearnTask], dict[str, Any]]
    exact: bool = False  # the result equals retraining without the forget set
    needs_labels: bool = True
    description: str = ""
