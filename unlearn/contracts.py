"""The ground floor: the small value types every layer shares. Imports nothing of the project.

- `Progress`: the callback a long computation reports through, (fraction done in [0, 1], message).
- `SampleRecord`: one addressable training (or holdout) sample of a model's data set.
- `Scope`: what a deletion request asks to forget, as a method and a verifier see it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

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
    subject_hash: str | None = None  # already hashed (a team's records): the registry stores it as it is
    caption: str | None = None  # the sample's text, where a text-to-image model was trained on it


@dataclass
class Scope:
    """What a deletion request asks to forget, resolved to sample ids by the service."""

    kind: str = "privacy"  # "privacy" | "corrective"
    type: str = "samples"  # "subject" | "samples" | "class" | "concept"
    label: int | None = None  # for type "class" (and "concept" on class-conditional models)
    concept: str | None = None
    labels_known: bool = True  # False: the requester sent samples without labels (LAF territory)
    # a text-to-image concept request's prompts: keys of CONCEPT_PROMPT_KEYS, where the request gave them
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], kind: str = "privacy") -> Scope:
        """A scope from its stored form (a request's or a job's `scope` column) and the request kind."""
        return cls(kind=kind, type=d.get("type", "samples"), label=d.get("label"), concept=d.get("concept"),
                   labels_known=d.get("labels_known", True),
                   extra={k: d[k] for k in CONCEPT_PROMPT_KEYS if d.get(k) is not None})

    def to_dict(self) -> dict[str, Any]:
        """The stored form: what `from_dict` reads back (the kind is stored beside it)."""
        return {"type": self.type, "label": self.label, "concept": self.concept, "labels_known": self.labels_known,
                **{k: v for k, v in self.extra.items() if k in CONCEPT_PROMPT_KEYS}}


# What a concept request on a text-to-image model may say beyond the concept: its own forget prompts or
# the regex that finds them in the captions, the override that replaces the concept, a CFG negative prompt.
CONCEPT_PROMPT_KEYS = ("forget_prompts", "forget_pattern", "override", "negative_prompt")


__all__ = ["CONCEPT_PROMPT_KEYS", "Progress", "SampleRecord", "Scope", "no_progress"]
