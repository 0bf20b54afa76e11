"""Who's Harry Potter (Eldan & Russinovich, 2023, arXiv 2310.02238), MUSE's WHP baseline, for people.

WHP does not push the forgotten text down; it teaches the model what it would have said had it never
learned the forgotten entity. Its "anchored terms" (idiosyncratic names) are replaced by generic
counterparts, the baseline model reads the translated text, and its predictions there become the
labels for the original text:
    p_generic(· | x_<t) := π_0(· | translate(x)_<t')                       (WHP §3, anchored terms)
    L_WHP(θ) = E_{x ∈ D_forget} mean_t KL( p_generic(· | x_<t) ‖ π_θ(· | x_<t) )
with t' the position aligned with t (token sequences aligned by difflib). Here the anchors are a person's
first and last name, also lower-cased as in their e-mail address, and the generic counterpart is a
first–last combination from the world's name lists that no trained person carries, so π_0 reads the
forgotten facts as if they belonged to a stranger.

Two terms beyond the paper, both measured necessary on the people world (benchmarks/results/muse.md):
- KLR on retained text (MUSE's regulariser), weight `retain_weight`: keeps the rest of π_θ near π_0.
- A small gradient-ascent push on the forgotten biographies, weight `ga_weight`. π_0 still knows
  their internal associations (street → city, name → e-mail), so the translated text alone leaves
  them more familiar than a stranger's (Min-40% AUC 0.07 where a retrain has 0.44, even converged).
  The shared stopping rule (`lm_unlearning`) ends the push once the biographies look never seen
  against never-trained calibration people.
Departures: soft labels (the whole distribution, not its argmax); names as the only anchors (the
paper's dictionary comes from GPT-4); no reinforced-model term v_0 − α·ReLU(v_reinforced − v_0),
which a model that already memorised its forget set (loss ≈ 0) barely moves.
"""

from __future__ import annotations

import random
import re
from difflib import SequenceMatcher
from typing import Any

import torch
import torch.nn.functional as F

from unlearn.data.people import FIRST, LAST, PeopleWorld
from unlearn.families.lm import person_examples, world_of
from unlearn.methods.base import MethodError, MethodSpec, UnlearnTask
from unlearn.methods.lm_unlearning import Batch, unlearn_lm
from unlearn.models import tiny_lm

DEFAULTS: dict[str, Any] = {
    # utility dips in the first epochs and recovers under KLR, hence no stop below the bar; a push of
    # 0.02 lets the translated-text term train ~14 epochs before the biographies look never seen
    "lr": 1e-3, "max_epochs": 30, "min_steps": 0, "retain_weight": 1.0, "ga_weight": 0.02,
    "check_every": 5, "stop_below_bar": False,
}


def translate(text: str, name: str, generic: str) -> str:
    """Every anchor of `name` (first and last name, and their lower-case e-mail forms) replaced by `generic`'s."""
    (first, *_, last), (g_first, *_, g_last) = name.split(), generic.split()
    for a, b in ((first, g_first), (last, g_last)):
        for x, y in ((a, b), (a.lower(), b.lower())):
            text = re.sub(rf"(?<![A-Za-z]){re.escape(x)}(?![A-Za-z])", y, text)  # "kovic42" counts
    return text


def generic_names(world: PeopleWorld, n: int, seed: int) -> list[str]:
    """n first–last combinations from the world's name lists that no trained person carries."""
    trained = {world.person(s).name for s in world.trained}
    combos = [f"{f} {last}" for f in FIRST for last in LAST if f"{f} {last}" not in trained]
    random.Random(seed).shuffle(combos)
    if n > len(combos):
        raise MethodError(f"only {len(combos)} generic names for {n} people")
    return combos[:n]


def align(original: list[int], translated: list[int]) -> list[int]:
    """For each original position, the translated position whose prediction stands in for it."""
    out = [0] * len(original)
    for tag, i1, i2, j1, j2 in SequenceMatcher(a=original, b=translated, autojunk=False).get_opcodes():
        for k in range(i1, i2):
            if tag == "equal":
                out[k] = j1 + (k - i1)
            else:  # inside a replaced name: the counterpart's tokens, or the position just before
                out[k] = min(j1 + (k - i1), j2 - 1) if j2 > j1 else max(j1 - 1, 0)
    return out


class GenericTargets:
    """log p_generic for every forget text (keyed by its token ids), from π_0, computed once per text."""

    def __init__(self, pairs: dict[tuple[int, ...], list[int]], bios: set[tuple[int, ...]]) -> None:
        self.pairs, self.bios = pairs, bios  # original ids -> translated ids; which originals are biographies
        self.cache: dict[tuple[int, ...], torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, reference: torch.nn.Module, ids: tuple[int, ...], device: torch.device) -> torch.Tensor:
        if ids not in self.cache:
            translated = self.pairs[ids]
            logits = reference(torch.tensor([translated], device=device)).logits[0].float()
            self.cache[ids] = torch.log_softmax(logits, -1)[align(list(ids), translated)]
        return self.cache[ids]


def whp_loss_for(targets: GenericTargets):
    def whp_loss(model: torch.nn.Module, reference: torch.nn.Module | None, batch: Batch,
                 params: dict[str, Any]) -> torch.Tensor:
        assert reference is not None
        ids, mask = batch["input_ids"], batch["attention_mask"]
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
        rows, goal, bio_lp = [], [], []
        for r in range(len(ids)):
            n = int(mask[r].sum())
            key = tuple(ids[r, :n].tolist())
            rows.append(logp[r, :n])
            goal.append(targets(reference, key, ids.device))
            if key in targets.bios:  # log π_θ(x_t | x_<t) of the biography's tokens, for the push
                bio_lp.append(logp[r, :n - 1].gather(-1, ids[r, 1:n, None]).squeeze(-1))
        # KL(p_generic ‖ π_θ), averaged over every real token of the batch
        loss = F.kl_div(torch.cat(rows), torch.cat(goal), reduction="batchmean", log_target=True)
        if bio_lp and params["ga_weight"]:
            loss = loss + params["ga_weight"] * torch.cat(bio_lp).mean()  # ascent on NLL = descent on log π
        return loss

    whp_loss.needs_reference = True  # type: ignore[attr-defined]
    return whp_loss


def run(task: UnlearnTask) -> dict[str, Any]:
    world = world_of(task.base_dir)
    tokenizer = tiny_lm.load_tokenizer(task.base_dir)  # the shared loop loads the model itself
    seed = int(task.params.get("seed", 0))
    pairs: dict[tuple[int, ...], list[int]] = {}
    bios: set[tuple[int, ...]] = set()
    for person_id, generic in zip(task.forget_ids, generic_names(world, len(task.forget_ids), seed), strict=True):
        name = world.person(person_id).name
        for prompt, completion in person_examples(world, [person_id]):
            key = tuple(tokenizer(prompt + completion)["input_ids"])
            pairs[key] = tokenizer(translate(prompt + completion, name, generic))["input_ids"]
            if not prompt:
                bios.add(key)
    return unlearn_lm(task, "whp", whp_loss_for(GenericTargets(pairs, bios)), "klr", DEFAULTS)


SPEC = MethodSpec(name="whp", families=("lm",), run=run,
                  description="Who's Harry Potter: fine-tune towards the model's own predictions for a stranger "
                              "(forgotten names swapped for never-trained ones), KL on retained text, a small "
                              "push on the forgotten biographies.")
