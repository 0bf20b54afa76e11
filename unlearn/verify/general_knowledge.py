"""General utility: questions about the world outside the customer's data that the base model answers right.

TOFU's model utility includes world facts, so that unlearning the fictitious people must keep what the
pretrained model knew. Here the questions are arithmetic, generated deterministically (`candidates`),
asked after `SHOTS` worked examples that are never scored, and answered right when the greedy answer
(cut as KnowMem answers are, `muse.cut_answer`) starts with the true number. The set is fixed once per
base model (`select_known`: the first `n` candidates the base answers right, stored with the model), so
the base scores 1.0 by construction and a candidate's accuracy on the set is what unlearning kept of it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

import numpy as np

from unlearn.verify.muse import LanguageModel, cut_answer

SHOTS = "Question: What is 3 + 4?\nAnswer: 7\n\nQuestion: What is 12 + 9?\nAnswer: 21\n\n"
NEW_TOKENS = 6  # the longest answer (three digits) and a stop
_NUMBER = re.compile(r"-?\d+")


def candidates(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """`n` distinct (question, answer) pairs drawn by `random.Random(seed)`, each a sum of two numbers below
    50, a difference of two such numbers (never negative) or a product of two numbers from 2 to 12, the
    kind drawn at random too; none repeats the worked examples in `SHOTS`. Raises ValueError for more
    than the 2,000 it can draw."""
    if n > 2000:
        raise ValueError(f"at most 2000 distinct questions, not {n}")
    rng = random.Random(seed)
    seen = {"What is 3 + 4?", "What is 12 + 9?"}
    out: list[tuple[str, str]] = []
    while len(out) < n:
        kind = rng.choice(("+", "-", "times"))
        if kind == "times":
            a, b = rng.randint(2, 12), rng.randint(2, 12)
            ans = a * b
        else:
            a, b = rng.randint(1, 49), rng.randint(1, 49)
            a, b = (max(a, b), min(a, b)) if kind == "-" else (a, b)
            ans = a + b if kind == "+" else a - b
        q = f"What is {a} {kind} {b}?"
        if q not in seen:
            seen.add(q)
            out.append((q, str(ans)))
    return out


def prompt(question: str) -> str:
    return f"{SHOTS}Question: {question}\nAnswer:"


def answers_right(lm: LanguageModel, questions: Sequence[tuple[str, str]]) -> np.ndarray:
    """Whether each greedy answer starts with the true number, bool (N,)."""
    outs = lm.generate([prompt(q) for q, _ in questions], NEW_TOKENS)
    first = [_NUMBER.match(cut_answer(o)) for o in outs]
    return np.array([m is not None and m.group(0) == a for m, (_, a) in zip(first, questions, strict=True)])


def accuracy(lm: LanguageModel, questions: Sequence[tuple[str, str]]) -> float:
    """The fraction of `questions` answered right. Raises ValueError for an empty set."""
    if not questions:
        raise ValueError("no general-knowledge questions to ask")
    return float(answers_right(lm, questions).mean())


def select_known(lm: LanguageModel, n: int, *, pool: int = 200, seed: int = 0) -> list[tuple[str, str]]:
    """The first `n` of `candidates(pool, seed)` that `lm` (the base model) answers right. Raises ValueError
    where fewer than `n` are."""
    pairs = candidates(pool, seed)
    right = answers_right(lm, pairs)
    kept = [p for p, ok in zip(pairs, right, strict=True) if ok]
    if len(kept) < n:
        raise ValueError(f"the base model answers only {len(kept)} of {pool} questions right; {n} are needed")
    return kept[:n]


__all__ = ["accuracy", "answers_right", "candidates", "prompt", "select_known"]
