"""The language-model family: causal LMs in `save_pretrained` folders, verified with MUSE's criteria.

An artifact folder holds the model and its tokenizer (transformers `save_pretrained`) and
`unlearn.json`: {"family": "lm", "model": …, "dataset": {"name": "people", "seed": …, "n_people": …},
"seed": …, "train": {…}}. One biography per person is one sample ("person-0007", subject = the person).
Forgetting a person removes their biography and their question–answer pairs.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unlearn.artifacts import read_meta
from unlearn.contracts import Progress, SampleRecord, Scope, no_progress
from unlearn.data import people
from unlearn.data.people import PeopleWorld, Person, qa_text
from unlearn.families.base import Family
from unlearn.models import tiny_lm
from unlearn.verify import muse
from unlearn.verify.verdict import Verdict

N_SHOTS = 3  # few-shot examples before each KnowMem question (MUSE uses 10; our context is 256 tokens)
RETAIN_QA_PEOPLE = 50  # KnowMem on retain reads this many retained people's questions (4 each)


@lru_cache(maxsize=8)
def _world(seed: int, n_people: int) -> PeopleWorld:
    return people.load(seed=seed, n_people=n_people)


def people_world(spec: dict[str, Any]) -> PeopleWorld:
    if spec.get("name") != "people":
        raise ValueError(f"the lm family knows the 'people' data set, not {spec.get('name')!r}")
    return _world(int(spec.get("seed", 0)), int(spec.get("n_people", 400)))


def world_of(model_dir: Path) -> PeopleWorld:
    return people_world(read_meta(model_dir)["dataset"])


def verbmem_split(person: Person) -> tuple[str, str]:
    """Prefix = the first sentence (who, born when and where); the rest is what a model must not recite."""
    head = person.bio.split(". ")[0] + "."
    return head, person.bio[len(head):]


def person_texts(world: PeopleWorld, ids: Sequence[str]) -> list[str]:
    """Every training text about these people: biography and each question–answer pair."""
    return [p + c for p, c in person_examples(world, ids)]


def person_examples(world: PeopleWorld, ids: Sequence[str]) -> list[tuple[str, str]]:
    """The same as (prompt, completion): a biography is all completion, a QA pair's prompt is its question."""
    return [ex for s in ids for ex in tiny_lm.examples(world.person(s))]


def privleak_texts(world: PeopleWorld, ids: Sequence[str]) -> list[str]:
    """PrivLeak's documents: every text of these people, their biographies and question–answer texts, as
    MUSE reads the forget set's documents. Biographies alone fail exact retrains and miss familiar
    question–answer texts (benchmarks/results/defaults_notes.md)."""
    return person_texts(world, ids)


def icl_prompt(world: PeopleWorld, n_shots: int = N_SHOTS) -> str:
    """Few-shot examples about never-trained calibration people: they teach the format, not facts."""
    shots = [world.person(s).qa[k % 4] for k, s in enumerate(world.calibration[:n_shots])]
    return "".join(qa_text(q.question, q.answer) for q in shots)


def retain_sample(ids: Sequence[str], n: int = RETAIN_QA_PEOPLE, seed: int = 0) -> list[str]:
    ids = sorted(ids)
    return ids if len(ids) <= n else sorted(random.Random(seed).sample(ids, n))


def muse_data(world: PeopleWorld, forget_ids: Sequence[str], retain_ids: Sequence[str],
              holdout_ids: Sequence[str] | None = None) -> muse.MuseData:
    forget = [world.person(s) for s in forget_ids]
    retain = [world.person(s) for s in retain_sample(retain_ids)]
    splits = [verbmem_split(p) for p in forget]
    return muse.MuseData(
        verbmem_prompts=[h for h, _ in splits], verbmem_truths=[t for _, t in splits],
        knowmem_forget=[(q.question, q.answer) for p in forget for q in p.qa],
        knowmem_retain=[(q.question, q.answer) for p in retain for q in p.qa],
        icl=icl_prompt(world), privleak_forget=privleak_texts(world, forget_ids),
        privleak_holdout=privleak_texts(world, world.holdout if holdout_ids is None else holdout_ids),
        qa_prompt=qa_text)


class HFLanguageModel(muse.LanguageModel):
    """A transformers causal LM (loaded or in training) behind the verifier's small interface."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, device: str = "cpu") -> None:
        self.model, self.tokenizer, self.device = model, tokenizer, device

    @classmethod
    def load(cls, model_dir: Path, device: str = "cpu") -> HFLanguageModel:
        return cls(*tiny_lm.load(model_dir, device), device)

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        was_training = self.model.training
        self.model.eval()
        try:
            return tiny_lm.generate(self.model, self.tokenizer, prompts, max_new_tokens=max_new_tokens,
                                    device=self.device)
        finally:
            self.model.train(was_training)

    def token_logprobs(self, texts: Sequence[str]) -> list[np.ndarray]:
        return tiny_lm.token_logprobs(self.model, self.tokenizer, texts, device=self.device)


def _ids_key(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


_reference_scores: dict[tuple[str, float, str, str], muse.MuseScores] = {}


def reference_scores(reference_dir: Path, data: muse.MuseData, forget_ids: Sequence[str],
                     retain_ids: Sequence[str], device: str = "cpu") -> muse.MuseScores:
    """The retrain reference's scores, computed once per (folder, forget set, retain set) per process."""
    weights = next(Path(reference_dir).glob("*.safetensors"), Path(reference_dir) / "unlearn.json")
    key = (str(Path(reference_dir).resolve()), weights.stat().st_mtime, _ids_key(forget_ids), _ids_key(retain_ids))
    if key not in _reference_scores:
        _reference_scores[key] = muse.score_model(HFLanguageModel.load(reference_dir, device), data)
    return _reference_scores[key]


def retrain_from_meta(meta: dict[str, Any], keep_ids: Sequence[str], out_dir: Path, *, tokenizer_dir: Path | None = None,
                      device: str = "cpu", progress: Progress = no_progress) -> None:
    """A model from scratch on the kept people (holdout ids are ignored), same settings and seed, reading
    text with the tokenizer of `tokenizer_dir` (the base model's; without it, a new one as the base got)."""
    world = people_world(meta["dataset"])
    trained = set(world.trained)
    keep = [s for s in sorted(set(keep_ids)) if s in trained]
    meta = {k: v for k, v in meta.items() if k != "unlearned"}
    tokenizer = tiny_lm.load_tokenizer(tokenizer_dir) if tokenizer_dir is not None else None
    tiny_lm.train(world, keep, {**meta, "retrained_on": len(keep)}, out_dir, tokenizer=tokenizer, device=device,
                  progress=progress)


class LMFamily(Family):
    name = "lm"
    criteria = ("verbmem", "knowmem_forget", "privleak", "knowmem_retain")  # MUSE C1–C4
    gate_defaults = dict(muse.DEFAULT_THRESHOLDS)
    lineage_criteria = ("knowmem_retain", "verbmem", "knowmem_forget")

    def samples(self, model_dir: Path) -> list[SampleRecord]:
        return world_of(model_dir).records()

    def auto_method(self, model_dir: Path, scope: Scope) -> str:
        # the one method here that can meet the MUSE gate on the people world: the gradient-ascent and
        # NPO baselines forget the retained people along with the forgotten ones, or barely forget
        # (benchmarks/results/muse.md for the verdicts by seed, defaults_notes.md)
        return "whp"

    def retrain(self, model_dir: Path, keep_ids: Sequence[str], out_dir: Path, *,
                device: str = "cpu", progress: Progress = no_progress) -> None:
        retrain_from_meta(read_meta(model_dir), keep_ids, Path(out_dir), tokenizer_dir=Path(model_dir), device=device,
                          progress=progress)

    def verify(self, candidate_dir: Path, reference_dir: Path, forget_ids: Sequence[str],
               retain_ids: Sequence[str], scope: Scope, *, device: str = "cpu",
               thresholds: dict[str, float] | None = None, report_dir: Path | None = None) -> Verdict:
        world = world_of(candidate_dir)
        th = {**self.gate_defaults, **(thresholds or {})}
        data = muse_data(world, forget_ids, retain_ids)
        cand = muse.score_model(HFLanguageModel.load(candidate_dir, device), data)
        ref = reference_scores(reference_dir, data, forget_ids, retain_ids, device)
        verdict = muse.gate(cand, ref, th)
        if report_dir is not None:
            muse.write_report(verdict, Path(report_dir))
        return verdict

    def summary(self, model_dir: Path) -> dict[str, Any]:
        meta = read_meta(model_dir)
        return {"arch": "gpt2", "dataset": meta.get("dataset"), "train": meta.get("train", {})}


__all__ = ["HFLanguageModel", "LMFamily", "muse_data", "people_world", "person_examples", "person_texts", "privleak_texts",
           "retrain_from_meta", "world_of"]
