"""What a model family is: how its data is addressed, how it retrains, how it is verified.

A family is the seam between the service (which only knows sample ids, subjects and
artifact folders) and the maths (which knows tensors). Three families exist:
`classifier`, `diffusion` and `lm`.

Artifact folders. Every model version is one folder. The family decides what lies in it
(safetensors for plain torch models, `save_pretrained` folders for transformers and
diffusers) but it always holds `unlearn.json` with at least:
    {"family": "...", "model": "<zoo or user model name>", "dataset": {...}}
The registry adds `manifest.json` (sha256 of every file) when the version is registered.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from unlearn.artifacts import read_meta

# Re-exported: the shared value types live on the ground floor, so that data and models need not
# import this module (and, through it, the verifiers).
from unlearn.contracts import Progress, SampleRecord, Scope, no_progress

if TYPE_CHECKING:
    from unlearn.verify.verdict import Verdict


@dataclass(frozen=True)
class ChainStep:
    """One method of a family's chain (`Family.method_chain`).

    `widen`: the step forgets, besides the request's samples, the ones an operator suspects
    (a corrective request's `suspect_ids`); a step that widens is skipped when there are none.
    `warning`: a caveat that goes with a candidate of this step into its verdict and the certificate
    (e.g. that retraining without the flagged samples alone may keep a backdoor)."""

    method: str
    widen: bool = False
    warning: str | None = None


class Family(ABC):
    name: ClassVar[str]
    # Whether `verify` needs the retrain-from-scratch reference. The diffusion family gates against
    # its teacher (a retrained teacher is only reported, in the benchmark), so the service skips
    # minutes of retraining there.
    needs_reference: ClassVar[bool] = True
    # The criteria `verify` reports and gates, its gates' defaults (the names its `thresholds` read),
    # and the utility and forgetting criteria whose course over a lineage the C5/C6 plots draw.
    criteria: ClassVar[tuple[str, ...]] = ()
    gate_defaults: ClassVar[dict[str, float]] = {}
    lineage_criteria: ClassVar[tuple[str, ...]] = ()
    # The reference policies a registered model of this family may name (`unlearn.json["reference"]`):
    # "retrain" (the exact retrain on the kept records), "precomputed" (a reference folder supplied at
    # registration) and, where the verifier can gate without any reference, "holdout" (never-trained
    # holdout records and the original model).
    reference_policies: ClassVar[tuple[str, ...]] = ("retrain", "precomputed")

    def gates(self, scope: Scope, method_gates: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, float]:
        """The gates a candidate is held to for a request of `scope`, before deployment or model
        overrides: the family's defaults, then those its method declares for the scope's type
        (`MethodSpec.gates`, keyed by scope type, "*" for any other)."""
        by_type = method_gates or {}
        return {**self.gate_defaults, **by_type.get(scope.type, by_type.get("*", {}))}

    @abstractmethod
    def samples(self, model_dir: Path) -> list[SampleRecord]:
        """Every sample of the data set the model at `model_dir` was built from, train and holdout."""

    @abstractmethod
    def auto_method(self, model_dir: Path, scope: Scope) -> str:
        """The registered method name that `method="auto"` resolves to for this model and scope."""

    @abstractmethod
    def retrain(self, model_dir: Path, keep_ids: Sequence[str], out_dir: Path, *,
                device: str = "cpu", progress: Progress = no_progress) -> None:
        """Exact reference: train the model's architecture from scratch on `keep_ids` only,
        with the same settings and seed as the original, and write the artifact to `out_dir`."""

    @abstractmethod
    def verify(self, candidate_dir: Path, reference_dir: Path | None, forget_ids: Sequence[str],
               retain_ids: Sequence[str], scope: Scope, *, device: str = "cpu",
               thresholds: dict[str, float] | None = None, report_dir: Path | None = None) -> Verdict:
        """Score the candidate against the retrain reference. `report_dir` receives plots."""

    def exact_update_check(self, candidate_dir: Path, parent_dir: Path, new_forget_ids: Sequence[str], *,
                           device: str = "cpu") -> Verdict | None:
        """For an exact method's candidate: a verdict from the statistics the update must have changed,
        without a reference (e.g. ACU's closed form, `unlearn.verify.exact`); None (the default) when the
        family has no such check for this model, and the candidate is verified against its reference."""
        return None

    def reference_policy(self, model_dir: Path) -> str:
        """How candidates of the model at `model_dir` are verified: its registered policy, else "retrain"
        for a family that gates against the retrain and "none" for one that does not."""
        policy = (read_meta(model_dir).get("reference") or {}).get("policy")
        return policy or ("retrain" if self.needs_reference else "none")

    def prepare(self, model_dir: Path, records: Any, options: Mapping[str, Any]) -> None:
        """Bring your own model: change the staged copy of a team's folder in place before registration
        (after the copy, before `byo_meta` and `check_forward`); e.g. the classifier family's analytic-head
        conversion (`options["analytic_head"]`). `records`: the normalised records (`unlearn.data.records.Records`);
        `options`: {"recipe", "reference", "analytic_head", …}. Raises ValueError to refuse the registration
        (its message is the one-line reason). Default: nothing to do."""
        return None

    def summary(self, model_dir: Path) -> dict[str, Any]:
        """Small facts for listings (architecture, sizes)."""
        return {}

    def can_retrain(self, model_dir: Path) -> bool:
        """Whether `retrain` can rebuild the model at `model_dir` (a team's model needs a recipe)."""
        return True

    def method_chain(self, model_dir: Path, scope: Scope) -> list[ChainStep]:
        """The methods a request of `scope` on the model at `model_dir` tries, in order: the job goes on to
        the next when a candidate fails its gate, and completes with the first that passes. The first step
        is `auto_method`'s choice; by default the exact retrain follows, where the model can be retrained.
        A method an operator named runs first and the job continues after that method's place here (or
        from the start, when the chain does not name it). When the chain is spent, the request waits for an
        operator (`needs_review`) with every verdict. Each step: a method name, whether it forgets the
        operator's suspected samples too (`ChainStep.widen`) and a warning that goes with its candidate."""
        first = self.auto_method(model_dir, scope)
        retrain = [ChainStep("retrain")] if first != "retrain" and self.can_retrain(model_dir) else []
        return [ChainStep(first), *retrain]

    # A team's own model (`unlearn.registration`): the registry stages a copy of the team's folder and
    # of its records, then calls these three in order on the copy; a ValueError refuses the
    # registration with its message, and nothing is kept.

    def byo_meta(self, model_dir: Path, records: Any, options: dict[str, Any]) -> dict[str, Any]:
        """The `unlearn.json` keys this family needs for the model at `model_dir` (architecture, the
        recipe's training settings, where a judge is), beyond family, model, dataset and reference.
        `options`: {"recipe": dict | None, "reference": policy, "analytic_head": bool, "judge_dir": …}.
        Raises ValueError for anything missing; a family that takes no team's models refuses here."""
        raise ValueError(f"the {self.name} family does not register a team's own models")

    def check_forward(self, model_dir: Path, records: Any) -> None:
        """Load the model at `model_dir` as this family and run one forward pass on one record.
        Raises ValueError with the reason (weights that do not match the architecture, records of
        another shape or range than the model takes)."""
        raise ValueError(f"the {self.name} family does not register a team's own models")


__all__ = ["ChainStep", "Family", "Progress", "SampleRecord", "Scope", "no_progress"]
