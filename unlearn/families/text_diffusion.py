"""Text-to-image models of the diffusion family: prompts, concepts and the teacher's training.

A text-to-image artifact is `unlearn.models.text_diffusion`'s pipeline folder + unlearn.json, with the
diffusion family's keys (sampler, t_init, teacher_dir, judge, judge_dir, train) and:
    "conditioning": "text"
    "forgotten_concepts": [{"concept", "forget_prompts", "override_prompts", "negative_prompt"}, ...]
                          every concept forgotten so far (a later SFD keeps them forgotten)
The data set's records carry captions; a concept request names a word or pattern of those captions.

Prompt sets (`concept_prompts`): the forget prompts are the distinct captions the concept's pattern
matches (or the request's own `forget_prompts`), the override prompts the same captions with the
pattern replaced by the override (SFD's regex replace, "brad pitt" → "a middle aged man"), the remaining
prompts every other distinct caption. Half of the remaining captions (every other one, sorted) are used
by the methods, the other half is held out for the verifier, so that the verifier's remaining prompts
are prompts no method optimised.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearn.artifacts import read_meta, write_meta
from unlearn.contracts import Progress, Scope, no_progress
from unlearn.data import get_dataset
from unlearn.models import text_diffusion


@dataclass(frozen=True)
class ConceptPrompts:
    """The prompts of one concept request. `override_prompts[i]` is `forget_prompts[i]` rewritten."""

    concept: str
    forget_prompts: list[str]
    override_prompts: list[str]
    remaining_train: list[str]  # what the methods may use
    remaining_heldout: list[str]  # what only the verifier uses
    negative_prompt: str = ""  # CFG's negative prompt for the override (SFD's nudity variant)
    override: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_meta(self) -> dict[str, Any]:
        return {"concept": self.concept, "forget_prompts": self.forget_prompts,
                "override_prompts": self.override_prompts, "negative_prompt": self.negative_prompt,
                "override": self.override}


def is_text_model(model_dir: Path) -> bool:
    return read_meta(model_dir).get("conditioning") == "text"


def pattern_of(concept: str, pattern: str | None = None) -> re.Pattern[str]:
    """The regex a concept matches in captions: the request's `forget_pattern`, else the concept as a
    whole word, with an optional plural s ("circle" matches "circles" too), case-insensitive."""
    return re.compile(pattern if pattern else rf"\b{re.escape(concept.strip())}s?\b", re.IGNORECASE)


def mentions(captions: Sequence[str], concept: str, pattern: str | None = None) -> list[bool]:
    """Whether each caption mentions the concept (its pattern matches). Raises ValueError for a bad regex."""
    try:
        rx = pattern_of(concept, pattern)
    except re.error as exc:
        raise ValueError(f"forget_pattern {pattern!r} is not a regular expression: {exc}") from None
    return [bool(rx.search(c or "")) for c in captions]


def _rewrite(prompt: str, rx: re.Pattern[str], override: str) -> str:
    # a plural stays plural ("two red circles" → "two red squares"), as in the captions' own grammar
    def sub(m: re.Match[str]) -> str:
        return override + ("s" if m.group(0).lower().endswith("s") and not override.endswith("s") else "")
    return rx.sub(sub, prompt)


def concept_prompts(captions: Sequence[str], scope: Scope) -> ConceptPrompts:
    """Forget, override and remaining prompts of a concept request (module docstring) from the model's
    captions. Raises ValueError when the captions never mention the concept or the scope has no override."""
    ex = scope.extra
    concept = (scope.concept or "").strip()
    pattern = ex.get("forget_pattern")
    distinct = sorted(set(c for c in captions if c))
    hit = mentions(distinct, concept, pattern)
    if not any(hit):
        raise ValueError(f"no caption of the model mentions the concept {concept!r}")
    override = ex.get("override")
    if not override:
        raise ValueError("a text-to-image concept request needs an 'override' (what the forget prompts should "
                         "show instead, e.g. 'square' for 'circle')")
    rx = pattern_of(concept, pattern)
    forget = list(ex.get("forget_prompts") or [c for c, h in zip(distinct, hit, strict=True) if h])
    remaining = [c for c, h in zip(distinct, hit, strict=True) if not h]
    return ConceptPrompts(concept=concept, forget_prompts=forget,
                          override_prompts=[_rewrite(p, rx, override) for p in forget],
                          remaining_train=remaining[0::2], remaining_heldout=remaining[1::2],
                          negative_prompt=str(ex.get("negative_prompt") or ""), override=override)


def captions_of(model_dir: Path) -> list[str]:
    """The captions of the model's training split (what its prompts are built from)."""
    data = get_dataset(read_meta(model_dir)["dataset"])
    return [c for c, sp in zip(data.captions or [], data.split, strict=False) if sp == "train"]


def train_teacher_artifact(meta: dict[str, Any], keep_ids: Sequence[str], out_dir: Path, *,
                           device: str = "cpu", progress: Progress = no_progress) -> None:
    """Train a text-to-image teacher from scratch on the images and captions of `keep_ids`, with
    meta["train"]'s settings and meta["seed"]; the tokenizer's words are those of every caption of the
    data set (a retrain without a concept's captions keeps the same vocabulary)."""
    data = get_dataset(meta["dataset"])
    rows = data.rows(list(keep_ids))
    captions = data.captions or []
    words = sorted({w for c in captions for w in re.findall(r"[a-z]+", c.lower())})
    t = meta["train"]
    pipe = text_diffusion.train_teacher(data.X[rows], [captions[r] for r in rows], words, steps=t["steps"],
                                        lr=t["lr"], batch_size=t["batch_size"], ema=t["ema"], seed=meta["seed"],
                                        device=device, progress=progress, unet_config=meta.get("unet_config"))
    text_diffusion.save_pipeline(pipe, Path(out_dir), sampler="multistep")
    write_meta(Path(out_dir), meta)


__all__ = ["ConceptPrompts", "captions_of", "concept_prompts", "is_text_model", "mentions", "pattern_of",
           "train_teacher_artifact"]
