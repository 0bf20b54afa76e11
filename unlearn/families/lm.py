"""The language-model family: causal LMs in `save_pretrained` folders, verified with MUSE's criteria.

An artifact folder holds the model and its tokenizer (transformers `save_pretrained`) and `unlearn.json`.
Two kinds of data set:
- the generated people world: {"family": "lm", "model": …, "dataset": {"name": "people", "seed": …,
  "n_people": …}, "seed": …, "train": {…}}. One biography per person is one sample ("person-0007",
  subject = the person); forgetting a person removes their biography and their question–answer pairs;
- a team's own model and records ("bring your own model"): any `AutoModelForCausalLM` folder with its
  tokenizer, {"dataset": {"name": "records", "path": …}, "reference": {"policy": …}, "seed": …,
  "train": <the retrain recipe, `lm_records.check_recipe`>, "original_dir": <the registered v1, written
  into every candidate and retrain>}. A record is a sample; what it contributes is `lm_records`'.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unlearn.artifacts import read_meta
from unlearn.contracts import Progress, SampleRecord, Scope, no_progress
from unlearn.data import people
from unlearn.data.people import PeopleWorld, Person, qa_text
from unlearn.families import lm_records
from unlearn.families.base import ChainStep, Family
from unlearn.models import people_finetune, tiny_lm
from unlearn.verify import general_knowledge, holdout, muse
from unlearn.verify.verdict import Criterion, Verdict, criterion, not_applicable

N_SHOTS = 3  # few-shot examples before each KnowMem question (MUSE uses 10; our context is 256 tokens)
RETAIN_QA_PEOPLE = 50  # KnowMem on retain reads this many retained people's questions (4 each)
RETAIN_RECORDS = 200  # records models: KnowMem on retain and the likelihood read this many retained records
NO_QA = "the records carry no question–answer pairs (question and answer fields) for the forgotten samples"


WORLD_OPTIONS = ("holdout_frac", "calibration_frac", "fold_frac")  # a spec's optional split fractions


@lru_cache(maxsize=8)
def _world(seed: int, n_people: int, locales: tuple[str, ...], fractions: tuple[tuple[str, float], ...]) -> PeopleWorld:
    return people.load(seed=seed, n_people=n_people, locales=locales, **dict(fractions))


def people_world(spec: dict[str, Any]) -> PeopleWorld:
    """The people world of a data set spec {"name": "people", "seed", "n_people"} and, for a world of
    Faker people, "locales" and the split fractions (`PeopleWorld.spec`)."""
    if spec.get("name") != "people":
        raise ValueError(f"the lm family knows the 'people' data set, not {spec.get('name')!r}")
    fractions = tuple((k, float(spec[k])) for k in WORLD_OPTIONS if k in spec)
    return _world(int(spec.get("seed", 0)), int(spec.get("n_people", 400)), tuple(spec.get("locales") or ()),
                  fractions)


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


def privleak_documents(world: PeopleWorld, ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """PrivLeak's documents and the kind of each ("bio", "qa"): every text of these people, raw, as MUSE
    scores a document (the tokenizer puts BOS in front; nothing is appended). A biography is its text
    without the EOS that training appends after it; a question–answer text is "Question: q\nAnswer: a"
    without the blank line that separates pairs in a training pack. Each document's tokens are thus the
    start of a text training read, so no token is scored in a place training never put it (an appended
    EOS after an answer, which training never saw, sits in every text's lowest 40% and decides C3).
    Biographies alone fail exact retrains and miss familiar question–answer texts
    (benchmarks/results/defaults_notes.md)."""
    docs = _documents(world, ids)
    return [d for d, _, _ in docs], [k for _, k, _ in docs]


def _documents(world: PeopleWorld, ids: Sequence[str]) -> list[tuple[str, str, str]]:
    """(document, kind, person id) of `privleak_documents`, in its order: every biography, then every
    question–answer text."""
    docs = [(world.person(s).bio, "bio", s) for s in ids]
    return docs + [(qa_text(q.question, q.answer).rstrip("\n"), "qa", s) for s in ids for q in world.person(s).qa]


def _questions(world: PeopleWorld, ids: Sequence[str]) -> list[tuple[str, tuple[str, str]]]:
    """(person id, (question, answer)) of KnowMem's questions about these people, in `muse_data`'s order."""
    return [(s, (q.question, q.answer)) for s in ids for q in world.person(s).qa]


def forget_items(world: PeopleWorld, forget_ids: Sequence[str]) -> list[dict[str, np.ndarray]]:
    """Each forgotten person's item indices in the forget scores of `muse_data(world, forget_ids, …)`, in
    `forget_ids`' order: its VerbMem prefix (`verbmem`), KnowMem questions (`knowmem_forget`) and PrivLeak
    documents (`mink_forget`). For scoring a subset of the people from one pass over all of them."""
    owners = {"verbmem": list(forget_ids), "knowmem_forget": [s for s, _ in _questions(world, forget_ids)],
              "mink_forget": [s for *_, s in _documents(world, forget_ids)]}
    return [{key: np.flatnonzero(np.array(o) == s) for key, o in owners.items()} for s in forget_ids]


def privleak_texts(world: PeopleWorld, ids: Sequence[str]) -> list[str]:
    """The documents of `privleak_documents`, without their kinds."""
    return privleak_documents(world, ids)[0]


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
    forget_docs, forget_kinds = privleak_documents(world, forget_ids)
    holdout_docs, holdout_kinds = privleak_documents(world, world.holdout if holdout_ids is None else holdout_ids)
    return muse.MuseData(
        verbmem_prompts=[h for h, _ in splits], verbmem_truths=[t for _, t in splits],
        knowmem_forget=[qa for _, qa in _questions(world, forget_ids)],
        knowmem_retain=[(q.question, q.answer) for p in retain for q in p.qa],
        icl=icl_prompt(world), privleak_forget=forget_docs, privleak_holdout=holdout_docs, qa_prompt=qa_text,
        privleak_forget_kinds=forget_kinds, privleak_holdout_kinds=holdout_kinds)


class HFLanguageModel(muse.LanguageModel):
    """A transformers causal LM (loaded or in training) behind the verifier's small interface."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, device: str = "cpu") -> None:
        self.model, self.tokenizer, self.device = model, tokenizer, device

    @classmethod
    def load(cls, model_dir: Path, device: str = "cpu") -> HFLanguageModel:
        return cls(*tiny_lm.load(model_dir, device), device)

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        with self._evaluating():
            return tiny_lm.generate(self.model, self.tokenizer, prompts, max_new_tokens=max_new_tokens,
                                    device=self.device)

    def token_logprobs(self, texts: Sequence[str]) -> list[np.ndarray]:
        # in eval mode: a model in training (a method's probe) with dropout would score noise
        with self._evaluating():
            return tiny_lm.token_logprobs(self.model, self.tokenizer, texts, device=self.device)

    @contextmanager
    def _evaluating(self) -> Iterator[None]:
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)


def _ids_key(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


_reference_scores: dict[tuple[str, float, str, str], muse.MuseScores] = {}


def reference_scores(reference_dir: Path, data: muse.MuseData, forget_ids: Sequence[str],
                     retain_ids: Sequence[str], device: str = "cpu",
                     parts: Sequence[str] = ("verbmem", "knowmem_forget", "knowmem_retain", "privleak")
                     ) -> muse.MuseScores:
    """The retrain reference's scores, computed once per (folder, forget set, retain set) per process."""
    weights = next(Path(reference_dir).glob("*.safetensors"), Path(reference_dir) / "unlearn.json")
    key = (str(Path(reference_dir).resolve()), weights.stat().st_mtime, _ids_key(forget_ids), _ids_key(retain_ids))
    if key not in _reference_scores:
        _reference_scores[key] = muse.score_model(HFLanguageModel.load(reference_dir, device), data, parts)
    return _reference_scores[key]


_reference_general: dict[tuple[str, float], float] = {}


def general_questions(model_dir: Path) -> list[tuple[str, str]]:
    """The fixed general-knowledge questions a model fine-tuned from a pretrained base carries in its
    `unlearn.json` (`general_knowledge.select_known`, chosen once on the base); empty for other models."""
    return [(str(q), str(a)) for q, a in read_meta(model_dir).get("general_questions") or ()]


def general_utility_criterion(lm: muse.LanguageModel, reference_dir: Path, questions: Sequence[tuple[str, str]],
                              utility_frac: float, device: str = "cpu") -> Criterion:
    """General utility: the candidate's accuracy on `questions` at least `utility_frac` × the retrain
    reference's (computed once per reference folder per process), with a bootstrap 95% interval."""
    weights = next(Path(reference_dir).glob("*.safetensors"), Path(reference_dir) / "unlearn.json")
    key = (str(Path(reference_dir).resolve()), weights.stat().st_mtime)
    if key not in _reference_general:
        _reference_general[key] = general_knowledge.accuracy(HFLanguageModel.load(reference_dir, device), questions)
    ref = _reference_general[key]
    right = general_knowledge.answers_right(lm, questions).astype(np.float64)
    return criterion("general_utility", right.mean(), ">=", utility_frac * ref, reference=ref,
                     ci=muse.bootstrap_ci(right),
                     detail=f"general utility: accuracy on {len(questions)} arithmetic questions the base model "
                            f"answers right; at least {utility_frac:.0%} of the retrain reference's")


def retrain_from_meta(meta: dict[str, Any], keep_ids: Sequence[str], out_dir: Path, *, tokenizer_dir: Path | None = None,
                      device: str = "cpu", progress: Progress = no_progress) -> None:
    """A model from scratch on the kept people (holdout ids are ignored), same settings and seed, reading
    text with the tokenizer of `tokenizer_dir` (the base model's; without it, a new one as the base got).
    A fine-tune of a pretrained base (`meta["train"]["base"]`) is retrained as it was made: the same
    fine-tune of the same base on the kept people (`people_finetune`), as TOFU and MUSE retrain."""
    world = people_world(meta["dataset"])
    trained = set(world.trained)
    keep = [s for s in sorted(set(keep_ids)) if s in trained]
    meta = {k: v for k, v in meta.items() if k != "unlearned"}
    if (meta.get("train") or {}).get("base"):
        people_finetune.finetune(world, keep, {**meta, "retrained_on": len(keep)}, out_dir, device=device,
                                 progress=progress)
        return
    tokenizer = tiny_lm.load_tokenizer(tokenizer_dir) if tokenizer_dir is not None else None
    tiny_lm.train(world, keep, {**meta, "retrained_on": len(keep)}, out_dir, tokenizer=tokenizer, device=device,
                  progress=progress)


def original_of(model_dir: Path) -> Path:
    """The registered model at the root of `model_dir`'s lineage: "original_dir" where recorded (every
    candidate and retrain of a records model records it), else `model_dir` itself (a registered v1)."""
    recorded = read_meta(model_dir).get("original_dir")
    return Path(recorded) if recorded else Path(model_dir)


def likelihood(lm: muse.LanguageModel, texts: Sequence[str]) -> float:
    """exp(−mean NLL) per token over every token of `texts` (float64): the model's per-token likelihood of
    them, in (0, 1], higher = better; the holdout gate keeps a fraction of the original's."""
    lp = np.concatenate([np.asarray(x, dtype=np.float64) for x in lm.token_logprobs(texts)] or [np.zeros(0)])
    if lp.size == 0:
        raise ValueError("the likelihood needs at least one text of two tokens or more")
    return float(np.exp(lp.mean()))


def records_muse_data(rec: Any, tokenizer: Any, forget_ids: Sequence[str], retain_ids: Sequence[str],
                      holdout_ids: Sequence[str]) -> tuple[muse.MuseData, str | None]:
    """MUSE's texts from a model's records, and the reason C2 and C4 do not apply (None where they do).

    C1 reads each trained forget text cut by tokens (`lm_records.verbmem_split`); C3 reads the trained
    forget texts against `holdout_ids`' texts (never trained on); C2 and C4 read the records' question–
    answer pairs, forget and a fixed sample of `RETAIN_RECORDS` retained records, after `N_SHOTS` few-shot
    pairs from the calibration half of the holdout (never trained on, never scored)."""
    forget = lm_records.trained(rec, forget_ids)
    splits = [lm_records.verbmem_split(tokenizer, t) for t in lm_records.texts(rec, forget)]
    qa_forget = lm_records.qa_pairs(rec, forget)
    retain = lm_records.sample(lm_records.trained(rec, retain_ids), RETAIN_RECORDS)
    calibration = lm_records.holdout_halves(rec)[1]
    icl = "".join(qa_text(q, a) for q, a in lm_records.qa_pairs(rec, calibration)[:N_SHOTS])
    data = muse.MuseData(verbmem_prompts=[h for h, _ in splits], verbmem_truths=[t for _, t in splits],
                         knowmem_forget=qa_forget, knowmem_retain=lm_records.qa_pairs(rec, retain), icl=icl,
                         privleak_forget=lm_records.texts(rec, forget),
                         privleak_holdout=lm_records.texts(rec, holdout_ids), qa_prompt=qa_text)
    applies = lm_records.has_qa(rec) and data.knowmem_forget and data.knowmem_retain
    return data, None if applies else NO_QA


def _parts(knowmem_na: str | None) -> tuple[str, ...]:
    return ("verbmem", "privleak") if knowmem_na else ("verbmem", "knowmem_forget", "knowmem_retain", "privleak")


def _retain_texts(rec: Any, retain_ids: Sequence[str]) -> list[str]:
    """The fixed sample of retained train texts the likelihood reads (utility without question–answer pairs)."""
    return lm_records.texts(rec, lm_records.sample(lm_records.trained(rec, retain_ids), RETAIN_RECORDS))


def verify_records(candidate_dir: Path, reference_dir: Path | None, forget_ids: Sequence[str],
                   retain_ids: Sequence[str], *, device: str = "cpu",
                   thresholds: dict[str, float] | None = None) -> Verdict:
    """MUSE's criteria for a records model, from its records (`records_muse_data`).

    With a reference (policies "retrain" and "precomputed"): C1–C4 as `muse.gate` judges them (C3 relative to
    the reference's AUC), plus `retain_likelihood`, the candidate's per-token likelihood of retained texts
    at least `utility_frac` × the reference's (C4 needs question–answer pairs; this gate does not).
    Without one (policy "holdout"): `holdout.holdout_criteria` on the verification half of the holdout:
    Min-40% Prob membership AUC forget vs holdout near 0.5, VerbMem on forget at most what the ORIGINAL scores
    on a never-seen set of the forget set's size (the upper 95% bound of the mean of that many of its holdout
    VerbMem scores, `holdout.never_seen_upper`) + `holdout_mem_margin`, likelihood of retained texts at least
    `holdout_utility_frac` of the original's; with question–answer pairs, KnowMem on forget bounded the same
    way by the original's KnowMem on holdout pairs, and KnowMem on retain at least `holdout_utility_frac` of
    the original's. Without question–answer pairs C2 and C4 are reported as not applicable
    (`not_applicable`), never gated. Raises ValueError when no forgotten sample is a trained text."""
    rec = lm_records.records_of(candidate_dir)
    th = {**LMFamily.gate_defaults, **(thresholds or {})}
    verification = lm_records.holdout_halves(rec)[0]
    cand_lm = HFLanguageModel.load(candidate_dir, device)
    data, knowmem_na = records_muse_data(rec, cand_lm.tokenizer, forget_ids, retain_ids, verification)
    if not data.verbmem_prompts:
        raise ValueError("none of the forgotten samples is a trained record with a text: nothing to verify")
    cand = muse.score_model(cand_lm, data, _parts(knowmem_na))
    utility_texts = _retain_texts(rec, retain_ids)
    utility = likelihood(cand_lm, utility_texts)
    if reference_dir is not None:
        ref_lm = HFLanguageModel.load(reference_dir, device)
        ref = reference_scores(reference_dir, data, forget_ids, retain_ids, device, _parts(knowmem_na))
        # no retrains of this model with other seeds have measured its own noise: the people world's bars
        # stand in, and each criterion says so
        verdict = muse.gate(cand, ref, th, knowmem_na=knowmem_na,
                            bars_from="the people world's LM, not this model (its own were never measured)")
        ref_utility = likelihood(ref_lm, utility_texts)
        verdict.criteria.append(criterion(
            "retain_likelihood", utility, ">=", th["utility_frac"] * ref_utility, reference=ref_utility,
            detail=f"per-token likelihood exp(−mean NLL) of {len(utility_texts)} retained texts; at least "
                   f"{th['utility_frac']:.0%} of the reference's"))
        return verdict
    original = HFLanguageModel.load(original_of(candidate_dir), device)
    # the original's view of never-trained texts: what "never seen" scores, cut as the forget texts are
    held = [lm_records.verbmem_split(original.tokenizer, t) for t in lm_records.texts(rec, verification)]
    held_data = muse.MuseData(verbmem_prompts=[h for h, _ in held], verbmem_truths=[t for _, t in held],
                              knowmem_forget=lm_records.qa_pairs(rec, verification), knowmem_retain=data.knowmem_retain,
                              icl=data.icl, privleak_forget=[], privleak_holdout=[], qa_prompt=qa_text)
    orig = muse.score_model(original, held_data, ("verbmem",) if knowmem_na else ("verbmem", "knowmem_forget",
                                                                                  "knowmem_retain"))
    g = {**holdout.GATE_DEFAULTS, **th}
    rows: list[Criterion] = holdout.holdout_criteria(
        forget_scores=cand.mink_forget, holdout_scores=cand.mink_holdout, forget_metric=float(cand.verbmem.mean()),
        holdout_metric=float(orig.verbmem.mean()), utility=utility,
        utility_original=likelihood(original, utility_texts), thresholds=g, metric_name="verbmem",
        utility_name="likelihood", seed=int(th["seed"]),
        holdout_metric_upper=holdout.never_seen_upper(orig.verbmem, len(cand.verbmem), n_boot=int(th["n_boot"]),
                                                      seed=int(th["seed"])))
    if knowmem_na:
        rows += [not_applicable("knowmem_forget", knowmem_na), not_applicable("knowmem_retain", knowmem_na)]
    elif len(orig.knowmem_forget):
        know_upper = holdout.never_seen_upper(orig.knowmem_forget, len(cand.knowmem_forget),
                                              n_boot=int(th["n_boot"]), seed=int(th["seed"]))
        rows += [criterion("knowmem_forget", cand.knowmem_forget.mean(), "<=", know_upper + g["holdout_mem_margin"],
                           reference=float(orig.knowmem_forget.mean()),
                           detail="C2 KnowMem on forget against the original's on holdout question–answer pairs "
                                  f"(upper 95% bound for a set of this size {know_upper:.4g}) + "
                                  f"{g['holdout_mem_margin']:.4g}"),
                 criterion("knowmem_retain", cand.knowmem_retain.mean(), ">=",
                           g["holdout_utility_frac"] * orig.knowmem_retain.mean(),
                           reference=float(orig.knowmem_retain.mean()),
                           detail=f"C4 KnowMem on retain; at least {g['holdout_utility_frac']:.0%} of the original's")]
    else:
        reason = "the holdout's verification half carries no question–answer pairs to compare C2 with"
        rows += [not_applicable("knowmem_forget", reason), not_applicable("knowmem_retain", reason)]
    info = {"policy": "holdout", "original": str(original_of(candidate_dir)),
            "n": {"verbmem": len(cand.verbmem), "privleak_forget": len(cand.mink_forget),
                  "privleak_holdout": len(cand.mink_holdout), "utility_texts": len(utility_texts)},
            "original_verbmem_holdout": float(orig.verbmem.mean()), "examples": cand.examples, "thresholds": g}
    return Verdict(criteria=rows, info=info)


def retrain_records(model_dir: Path, keep_ids: Sequence[str], out_dir: Path, *, device: str = "cpu",
                    progress: Progress = no_progress) -> None:
    """The recipe's retrain of a records model on the kept train records (`lm_records.training_texts`,
    holdout ids ignored): the recipe's `base` checkpoint fine-tuned, or, without one, the model's own
    config from scratch (weights initialised under `torch.manual_seed(seed)`), then `tiny_lm.finetune`
    with the recipe's settings; saved with the model's tokenizer. Raises ValueError without a recipe."""
    from transformers import AutoConfig, AutoModelForCausalLM

    meta = read_meta(model_dir)
    if not meta.get("train"):
        raise ValueError(f"the model at {model_dir} was registered without a retrain recipe (policy "
                         f"{(meta.get('reference') or {}).get('policy')!r}): it cannot be retrained")
    recipe = lm_records.check_recipe(meta["train"])
    rec = lm_records.records_of(model_dir)
    keep = lm_records.trained(rec, sorted(set(keep_ids)))
    tokenizer = tiny_lm.load_tokenizer(model_dir)
    torch.manual_seed(recipe["seed"])
    if "base" in recipe:
        model = AutoModelForCausalLM.from_pretrained(recipe["base"], local_files_only=True)
    else:
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(model_dir), local_files_only=True))
    tiny_lm.finetune(model, tokenizer, lm_records.training_texts(rec, keep, tokenizer.eos_token or ""),
                     **{k: recipe[k] for k in lm_records.RECIPE_KEYS}, device=device, progress=progress)
    meta = {k: v for k, v in meta.items() if k != "unlearned"}
    tiny_lm.save(model.eval(), tokenizer, {**meta, "retrained_on": len(keep),
                                           "original_dir": str(original_of(model_dir))}, Path(out_dir))


class LMFamily(Family):
    name = "lm"
    # MUSE C1–C4; a records model adds the per-token likelihood of retained texts (with a reference) or the
    # holdout gate's three criteria (without one)
    criteria = ("verbmem", "knowmem_forget", "privleak", "privleak_bio", "privleak_qa", "knowmem_retain",
                "general_utility", "retain_likelihood",
                "holdout_mia_auc", "holdout_verbmem", "holdout_likelihood")
    # without MUSE's noise bars: `muse.gate` picks them by the forget set's size unless a model or request
    # sets them
    gate_defaults = {k: v for k, v in {**muse.DEFAULT_THRESHOLDS, **holdout.GATE_DEFAULTS}.items()
                     if k not in muse.NOISE_BARS}
    # those applicable in a verdict are drawn: MUSE's on the people world; on records without
    # question–answer pairs, VerbMem and the likelihood of retained texts
    lineage_criteria = ("knowmem_retain", "verbmem", "knowmem_forget", "holdout_likelihood", "holdout_verbmem",
                        "retain_likelihood")
    # "holdout" only for a records model (`verify` refuses it on the people world, whose retrain is cheap)
    reference_policies = ("retrain", "precomputed", "holdout")

    def samples(self, model_dir: Path) -> list[SampleRecord]:
        if lm_records.is_records_model(model_dir):
            return lm_records.records_of(model_dir).records()
        return world_of(model_dir).records()

    def auto_method(self, model_dir: Path, scope: Scope) -> str:
        # a records model has no entity spans for whp to translate: NPO with the KL regulariser on retained
        # text needs nothing but the texts
        if model_dir is not None and lm_records.is_records_model(model_dir):
            return "npo_klr"
        # the one method here that can meet the MUSE gate on the people world: the gradient-ascent and
        # NPO baselines forget the retained people along with the forgotten ones, or barely forget
        # (benchmarks/results/muse.md for the verdicts by seed, defaults_notes.md)
        return "whp"

    def method_chain(self, model_dir: Path, scope: Scope) -> list[ChainStep]:
        """whp → npo_klr → the exact retrain on the people world; a records model (no entity spans, where
        whp refuses) starts at npo_klr, and retrains only with its recipe."""
        steps = [ChainStep(m) for m in dict.fromkeys((self.auto_method(model_dir, scope), "npo_klr"))]
        return steps + ([ChainStep("retrain")] if self.can_retrain(model_dir) else [])

    def retrain(self, model_dir: Path, keep_ids: Sequence[str], out_dir: Path, *,
                device: str = "cpu", progress: Progress = no_progress) -> None:
        if lm_records.is_records_model(model_dir):
            retrain_records(Path(model_dir), keep_ids, Path(out_dir), device=device, progress=progress)
            return
        retrain_from_meta(read_meta(model_dir), keep_ids, Path(out_dir), tokenizer_dir=Path(model_dir), device=device,
                          progress=progress)

    def check_forward(self, model_dir: Path, records: Any) -> None:
        """Load the folder as transformers would (`AutoModelForCausalLM` and `AutoTokenizer`, local files
        only) and score the first train record's text in one forward pass. Raises ValueError with the reason:
        records without a `text` column or train text, a folder that does not load (weights that do not
        match its config, no tokenizer), a non-finite loss."""
        if not records.has("text"):
            raise ValueError("an lm model needs records with a text field (the training texts)")
        first = lm_records.texts(records, records.ids_in("train"))[:1]
        if not first:
            raise ValueError("the records hold no train record with a text")
        from transformers import AutoModelForCausalLM

        try:
            # transformers re-initialises weights whose shape differs from the config (with a warning only):
            # the loading report is what tells a folder whose weights are not its config's
            model, report = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True,
                                                                 output_loading_info=True, ignore_mismatched_sizes=True)
            tokenizer = tiny_lm.load_tokenizer(Path(model_dir))
        except Exception as exc:  # noqa: BLE001 - any loader fault is the registration's one-line reason
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"the folder does not load as a causal LM with its tokenizer: {reason}") from None
        faults = {kind: sorted(map(str, report.get(kind) or ())) for kind in ("mismatched_keys", "missing_keys",
                                                                              "unexpected_keys")}
        if any(faults.values()):
            shown = "; ".join(f"{kind.replace('_', ' ')}: {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''}"
                              for kind, keys in faults.items() if keys)
            raise ValueError(f"the folder does not load as a causal LM with its tokenizer: its weights do not match "
                             f"its config.json ({shown})")
        model.eval()
        # transformers builds an empty tokenizer of the config's model type where the folder has none
        if len(tokenizer) < 2:
            raise ValueError("the folder has no tokenizer (save it with tokenizer.save_pretrained beside the model)")
        batch = tiny_lm.encode(tokenizer, first, "cpu", max_length=tiny_lm.context_length(model))
        n_embed = model.get_input_embeddings().num_embeddings
        if int(batch["input_ids"].max()) >= n_embed:
            raise ValueError(f"the tokenizer gives token ids up to {int(batch['input_ids'].max())}, beyond the model's "
                             f"{n_embed} embeddings: it is not the model's tokenizer")
        if batch["input_ids"].shape[1] < 2:
            raise ValueError("the first train text is shorter than two tokens: no next-token loss to check")
        try:
            with torch.no_grad():
                loss = model(**batch, labels=tiny_lm.lm_labels(batch)).loss
        except Exception as exc:  # noqa: BLE001 - a forward fault is the registration's one-line reason
            raise ValueError(f"the model's forward pass on the first train text fails: {exc}") from None
        if not torch.isfinite(loss):
            raise ValueError(f"the model's loss on the first train text is not finite ({float(loss)})")

    def byo_meta(self, model_dir: Path, records: Any, options: dict[str, Any]) -> dict[str, Any]:
        """unlearn.json keys of a registered causal LM: the recipe its retrain follows ("train",
        `lm_records.check_recipe`; required under the "retrain" policy, kept where given otherwise) and its
        seed. Raises ValueError naming missing recipe keys, for records without texts, and for a policy
        whose verifier needs holdout records (C3, the holdout gate) when the records have none."""
        policy = options.get("reference") or "retrain"
        if policy not in self.reference_policies:
            raise ValueError(f"the lm family verifies under {', '.join(self.reference_policies)}, not {policy!r}")
        if not records.has("text"):
            raise ValueError("an lm model needs records with a text field (the training texts)")
        if not lm_records.texts(records, records.ids_in("holdout")):
            raise ValueError("the holdout policy needs holdout records" if policy == "holdout" else
                             "C3 PrivLeak needs holdout records (never-trained texts) to compare the forget set with")
        recipe = options.get("recipe")
        if policy == "retrain" or recipe:
            train = lm_records.check_recipe(recipe)
            return {"seed": train["seed"], "train": train}
        return {}

    def verify(self, candidate_dir: Path, reference_dir: Path | None, forget_ids: Sequence[str],
               retain_ids: Sequence[str], scope: Scope, *, device: str = "cpu",
               thresholds: dict[str, float] | None = None, report_dir: Path | None = None) -> Verdict:
        if lm_records.is_records_model(candidate_dir):
            verdict = verify_records(candidate_dir, reference_dir, forget_ids, retain_ids, device=device,
                                     thresholds=thresholds)
        else:
            if reference_dir is None:
                raise ValueError("a people-world model is verified against its retrain reference (policy "
                                 "'retrain' or 'precomputed'); the holdout policy is for models registered with records")
            world = world_of(candidate_dir)
            data = muse_data(world, forget_ids, retain_ids)
            cand_lm = HFLanguageModel.load(candidate_dir, device)
            cand = muse.score_model(cand_lm, data)
            ref = reference_scores(reference_dir, data, forget_ids, retain_ids, device)
            verdict = muse.gate(cand, ref, thresholds)
            questions = general_questions(candidate_dir)
            if questions:
                verdict.criteria.append(general_utility_criterion(
                    cand_lm, reference_dir, questions, verdict.info["thresholds"]["utility_frac"], device))
        if report_dir is not None:
            muse.write_report(verdict, Path(report_dir))
        return verdict

    def can_retrain(self, model_dir: Path) -> bool:
        # a team's model retrains by its recipe, registered or not; the people world's always can
        return not lm_records.is_records_model(model_dir) or bool(read_meta(model_dir).get("train"))

    def summary(self, model_dir: Path) -> dict[str, Any]:
        meta = read_meta(model_dir)
        if lm_records.is_records_model(model_dir):
            config = json.loads((Path(model_dir) / "config.json").read_text())
            return {"arch": config.get("model_type"), "dataset": meta.get("dataset"), "train": meta.get("train", {}),
                    "reference": meta.get("reference")}
        arch = json.loads((Path(model_dir) / "config.json").read_text()).get("model_type", "gpt2")
        return {"arch": arch, "dataset": meta.get("dataset"), "train": meta.get("train", {})}


__all__ = ["HFLanguageModel", "LMFamily", "forget_items", "general_questions", "general_utility_criterion", "likelihood", "muse_data", "original_of", "people_world", "person_examples",
           "person_texts", "privleak_documents", "privleak_texts", "records_muse_data", "retrain_from_meta", "retrain_records",
           "verify_records", "world_of"]
