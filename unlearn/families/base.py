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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from unlearn.verify.verdict import Verdict

Progress = Callable[[float, str], None]  # (fraction done in [0, 1], message)


def no_progress(fraction: float, message: str) -> None:  # noqa: ARG001
    return None


@dataclass(frozen=True)
class SampleRecord:
    """One addressable training (or holdout) sample of a model's data set."""

    sample_id: str
    subject: str | None = None  # the person the sample is about, if any
    label: int | None = None  # class label, where the family has one
    split: str = "train"  # "train": the model learned it; "holdout": never trained on (for MIA)


@dataclass
class Scope:
    """What a deletion request asks to forget, resolved to sample ids by the service."""

    kind: str = "privacy"  # "privacy" | "corrective"
    type: str = "samples"  # "subject" | "samples" | "class" | "concept"
    label: int | None = None  # for type "class" (and "concept" on class-conditional models)
    concept: str | None = None
    labels_known: bool = True  # False: the requester sent samples without labels (LAF territory)
    extra: dict[str, Any] = field(default_factory=dict)


class Family(ABC):
    name: ClassVar[str]
    # Whether `verify` needs the retrain-from-scratch reference. The diffusion family gates against
    # its teacher (a retrained teacher is only reported, in the benchmark), so the service skips
    # minutes of retraining there.
    needs_reference: ClassVar[bool] = True

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

    def summary(self, model_dir: Path) -> dict[str, Any]:
        """Small facts for listings (architecture, sizes)."""
        return {}
