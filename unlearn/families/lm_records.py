"""A team's own causal LM on its own records: what the `lm` family and its methods read from the records.

A model registered with records (`unlearn.json["dataset"] == {"name": "records", "path": …}`, see
`unlearn.data.records`) is trained on the `text` of its train records, each followed by the tokenizer's
EOS, and on the question–answer text ("Question: q\\nAnswer: a\\n\\n") of records that carry a `question`
and an `answer`. Its holdout records were never trained on.

The holdout is split once, deterministically, into two halves of subjects (a record without a subject is
its own group): groups ordered by the sha256 of their key, even positions to the **verification** half
(the verifier's never-seen texts: C3's and the holdout gate's non-members, the original's VerbMem on the
holdout) and odd positions to the **calibration** half (what the methods' stopping probe compares the
forget texts with, and the few-shot examples of KnowMem prompts, which are never scored). A method thus
never tunes its stopping point on the texts that then judge it, as the people world's `calibration` split
keeps apart from its `holdout`. Alternating positions keep the halves within one group of each other.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unlearn.artifacts import read_meta
from unlearn.data import records
from unlearn.data.people import qa_text

Example = tuple[str, str]  # (prompt, completion): losses read the completion's tokens only
RECIPE_KEYS = ("lr", "epochs", "batch_size", "seed", "max_length")  # plus "base", optional


def is_records_model(model_dir: Path) -> bool:
    """Whether the model at `model_dir` was registered with its own records (not the people world)."""
    return (read_meta(model_dir).get("dataset") or {}).get("name") == "records"


def records_of(model_dir: Path) -> records.Records:
    """The records folder named by the model's `unlearn.json["dataset"]["path"]`."""
    return records.load(str(read_meta(model_dir)["dataset"]["path"]))


def holdout_halves(rec: records.Records) -> tuple[list[str], list[str]]:
    """(verification, calibration): the holdout's sample ids split by subject as the module says."""
    groups: dict[str, list[str]] = {}
    ids = rec.ids_in("holdout")
    for sid, subject in zip(ids, rec.column("subject_hash", ids), strict=True):
        groups.setdefault(subject or sid, []).append(sid)
    order = sorted(groups, key=lambda k: hashlib.sha256(k.encode()).hexdigest())
    return [s for k in order[0::2] for s in groups[k]], [s for k in order[1::2] for s in groups[k]]


def trained(rec: records.Records, ids: Sequence[str]) -> list[str]:
    """The train records among `ids`, in order (a request may name holdout records: never trained on)."""
    return [s for s in ids if s in rec.index and rec.split[rec.row(s)] == "train"]


def texts(rec: records.Records, ids: Sequence[str]) -> list[str]:
    """The `text` of each of `ids` that has one."""
    return [t for t in rec.column("text", ids) if t]


def has_qa(rec: records.Records) -> bool:
    return rec.has("question") and rec.has("answer")


def qa_pairs(rec: records.Records, ids: Sequence[str]) -> list[tuple[str, str]]:
    """(question, answer) of each of `ids` that carries both."""
    return [(q, a) for q, a in zip(rec.column("question", ids), rec.column("answer", ids), strict=True) if q and a]


def training_texts(rec: records.Records, ids: Sequence[str], eos: str) -> list[str]:
    """What the model was trained on for `ids`: each text + EOS, each question–answer text + EOS."""
    return [t + eos for t in texts(rec, ids)] + [qa_text(q, a) + eos for q, a in qa_pairs(rec, ids)]


def examples(rec: records.Records, ids: Sequence[str], eos: str) -> list[Example]:
    """The same as (prompt, completion): a text is all completion; a question–answer pair's prompt is its
    question, as TOFU-style unlearning reads answers only."""
    return [("", t + eos) for t in texts(rec, ids)] + [(qa_text(q), f" {a}{eos}") for q, a in qa_pairs(rec, ids)]


def sample(ids: Sequence[str], n: int, seed: int = 0) -> list[str]:
    """A fixed sample of at most `n` of `ids` (sorted first, so the same set gives the same sample)."""
    ids = sorted(ids)
    return ids if len(ids) <= n else sorted(random.Random(seed).sample(ids, n))


def verbmem_split(tokenizer: Any, text: str, fraction: float = 1 / 3) -> tuple[str, str]:
    """(prefix, continuation) of `text` cut by tokens: the first ⌊fraction · n⌋ tokens (at least one, and
    at most n − 1 where n > 1) are the prompt, the rest is what C1 VerbMem asks the model to recite. MUSE
    prompts with the first tokens of a forget document and scores the next ones (§3, C1); records carry no
    natural cut such as the people world's first sentence, hence a fixed share of tokens."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    k = max(1, min(int(fraction * len(ids)), len(ids) - 1))
    return tokenizer.decode(ids[:k]), tokenizer.decode(ids[k:])


def check_recipe(recipe: dict[str, Any] | None) -> dict[str, Any]:
    """The retrain recipe, typed: `lr`, `epochs`, `batch_size`, `seed`, `max_length` and, where the model is
    a fine-tune, `base` (the base checkpoint's folder; the retrain fine-tunes it on the kept texts, as MUSE
    and TOFU retrain a fine-tuned model). Raises ValueError naming every missing or non-positive key."""
    recipe = recipe or {}
    missing = [k for k in RECIPE_KEYS if k not in recipe]
    if missing:
        raise ValueError(f"the lm recipe needs {', '.join(missing)} (learning rate, epochs, batch size, seed, "
                         "max tokens per text; optional base: the checkpoint the model was fine-tuned from)")
    out = {"lr": float(recipe["lr"]), "epochs": int(recipe["epochs"]), "batch_size": int(recipe["batch_size"]),
           "seed": int(recipe["seed"]), "max_length": int(recipe["max_length"])}
    bad = [k for k in ("lr", "epochs", "batch_size", "max_length") if not (out[k] > 0 and math.isfinite(out[k]))]
    if bad:
        raise ValueError(f"the lm recipe's {', '.join(bad)} must be positive")
    if recipe.get("base"):
        out["base"] = str(recipe["base"])
    return out


__all__ = ["RECIPE_KEYS", "check_recipe", "examples", "has_qa", "holdout_halves", "is_records_model", "qa_pairs",
           "records_of", "sample", "texts", "trained", "training_texts", "verbmem_split"]
