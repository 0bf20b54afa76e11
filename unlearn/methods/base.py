"""The method contract: one function from (base model, forget set, …) to a candidate model.

A method is one file under `unlearn/methods/` that exposes `run(task) -> dict` and is
named in `unlearn.methods.METHODS`. The service calls it with an `UnlearnTask`; the
method writes a complete artifact folder (same layout as the base) into `task.out_dir`
and returns a small dict of facts about the run (parameters used, steps, timings) that
the registry stores with the version.

A method declares what it needs in its `MethodSpec`: its parameters as a pydantic model
(defaults and bounds; intake refuses an unknown or out-of-range key before anything runs),
whether it needs the forget set's labels, whether its result is exact, and any verifier
gates it is held to beyond its family's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from unlearn.contracts import Progress, Scope, no_progress


@dataclass
class UnlearnTask:
    family: str
    base_dir: Path  # artifact folder of the base version; read only
    out_dir: Path  # empty folder for the candidate artifact
    forget_ids: list[str]  # samples to forget (union of the coalesced requests)
    retain_ids: list[str]  # samples the candidate must still hold; ACU must not read them
    scope: Scope = field(default_factory=Scope)
    params: dict[str, Any] = field(default_factory=dict)  # as the request gave them; see `MethodSpec.params`
    device: str = "cpu"
    progress: Progress = no_progress


class MethodError(ValueError):
    """The request cannot be served by this method (bad input, not a model it applies to)."""


class ParamsError(MethodError):
    """A request's method parameters are unknown to the method or out of its bounds; the message
    names each offending key as `params.<key>`."""


class MethodParams(BaseModel):
    """Base of a method's parameter model: every field has the method's default, unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


class UncheckedParams(BaseModel):
    """The parameters of a method that declares no model (a plugin): passed through unchecked."""

    model_config = ConfigDict(extra="allow")


P = TypeVar("P", bound=BaseModel)


def parse_params(model: type[P], method: str, raw: Mapping[str, Any]) -> P:
    """`raw` (a request's `params`) validated against `model`, defaults filled in.

    Raises `ParamsError` naming every offending key, e.g. "params.lr: Input should be less than
    or equal to 1" or "params.foo: unknown parameter of method 'laf'"."""
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(part) for part in ("params", *err["loc"]))
            problems.append(f"{key}: unknown parameter of method {method!r}" if err["type"] == "extra_forbidden"
                            else f"{key}: {err['msg']}")
        raise ParamsError("; ".join(problems)) from None


@dataclass(frozen=True)
class MethodSpec:
    name: str
    families: tuple[str, ...]  # the model families it applies to; "*" for every family
    run: Callable[[UnlearnTask], dict[str, Any]]
    # The method's parameters: defaults and bounds (a `MethodParams` subclass); an empty one refuses any key.
    params: type[BaseModel] = UncheckedParams
    # Verifier gates the method is held to beyond its family's defaults, by request scope type ("*": any other).
    gates: dict[str, dict[str, float]] = field(default_factory=dict)
    exact: bool = False  # the result equals retraining from scratch without the forget set (certificates say so)
    # The candidate is the family's own retrain-from-scratch: the service caches it as the verifier's
    # reference instead of training the same model twice. An exact method computed another way (ACU's
    # closed form) is still checked against an independent retrain.
    is_reference: bool = False
    needs_labels: bool = True  # reads the forget set's labels: refused for a request whose samples come without

    def applies_to(self, family: str) -> bool:
        return "*" in self.families or family in self.families

    def parse_params(self, raw: Mapping[str, Any]) -> BaseModel:
        """The request's `params` as this method's parameter model; `ParamsError` names any bad key."""
        return parse_params(self.params, self.name, raw)
