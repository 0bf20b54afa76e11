"""The verifier's output: one row per criterion, and the overall pass or fail.

Every family's verifier returns a `Verdict`, so that the registry, the API and the
dashboard show them the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Criterion:
    """One checked property. `op` says how `value` is compared with `threshold`:
    "<=" and ">=" against a number, "within" for |value| <= threshold, "n/a" for a criterion that does
    not apply to the model (`not_applicable`: no value, no threshold, never gated)."""

    name: str
    value: float | None
    threshold: float | None
    op: str
    passed: bool
    reference: float | None = None  # the retrain reference's value, where there is one
    ci: tuple[float, float] | None = None  # bootstrap 95% interval
    detail: str = ""
    applicable: bool = True  # False: the criterion cannot be computed for this model; `detail` says why
    gated: bool = True  # False: shown with its threshold but not part of the verdict; `detail` says why

    @property
    def decides(self) -> bool:
        """Whether this row is part of the verdict: it has a threshold and is gated."""
        return self.threshold is not None and self.gated

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci"] = list(self.ci) if self.ci is not None else None
        return d


def check(value: float, op: str, threshold: float) -> bool:
    if op == "<=":
        return value <= threshold
    if op == ">=":
        return value >= threshold
    if op == "within":
        return abs(value) <= threshold
    raise ValueError(f"unknown comparison {op!r}")


def criterion(name: str, value: float, op: str, threshold: float, **kw: Any) -> Criterion:
    return Criterion(name=name, value=float(value), threshold=float(threshold), op=op,
                     passed=check(float(value), op, float(threshold)), **kw)


def not_applicable(name: str, reason: str) -> Criterion:
    """A criterion the verifier declares but cannot compute for this model (e.g. MUSE's KnowMem on records
    without question–answer pairs): shown in the verdict as "not applicable" with `reason`, with no value
    and no threshold, so it neither passes nor fails the gate."""
    return Criterion(name=name, value=None, threshold=None, op="n/a", passed=True, applicable=False,
                     detail=f"not applicable: {reason}")


@dataclass
class Verdict:
    criteria: list[Criterion]
    info: dict[str, Any] = field(default_factory=dict)  # extra metrics, not gated
    plots: dict[str, str] = field(default_factory=dict)  # name -> file path of a PNG

    @property
    def passed(self) -> bool:
        return bool(self.criteria) and all(c.passed for c in self.criteria if c.decides)

    @property
    def reasons(self) -> list[str]:
        return [f"{c.name}={c.value:.4g} fails {c.op} {c.threshold:.4g}" for c in self.criteria
                if c.decides and not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": "pass" if self.passed else "fail",
            "criteria": {c.name: c.to_dict() for c in self.criteria},
            "reasons": self.reasons,
            "info": self.info,
            "plots": self.plots,
        }
