"""Who's Harry Potter (Eldan & Russinovich, 2023, arXiv 2310.02238), MUSE's WHP baseline, for people.

WHP does not push the forgotten text down; it teaches the model what it would have said had it never
learned the forgotten entity. The text's "anchored terms" are replaced by generic counterparts, the
baseline model reads the translated text, and its predictions there become the labels for the original:
    p_generic(· | x_<t) := π_0(· | translate(x)_<t')                       (WHP §3, anchored terms)
    L_WHP(θ) = E_{x ∈ D_forget} mean_t KL( p_generic(· | x_<t) ‖ π_θ(· | x_<t) )
with t' the position aligned with t (token sequences aligned by difflib). WHP's reinforced term
(MUSE's WHP uses α = 4 on News) sharpens the labels:
    v_generic = v_b − α · ReLU(v_r − v_b)
with b = π_0 reading the translation and r = π_0 reading the original. The target memorised its forget
set, so it already is the paper's reinforced model: what it predicts more strongly for knowing the
person drops below generic. Here v is a log-probability, not a logit (a context's logits carry an
arbitrary offset that the ReLU would see); `alpha` is α.

Anchors and their counterparts. In a biography every personal datum is idiosyncratic (the rest is
template), so every datum is an anchor, and the generic counterpart of a person is a stranger: a new
person, generated as the world's are, under a name nobody carries (`people.strangers`). The
translation of a forgotten text is the stranger's text of the same kind (biography for biography,
question for question). Inside a stretch where the two differ, π_0 reads the stranger's text up to
the stretch and then the original's own tokens of it, so it spells out "Lille" as a model that knows
cities but not this person would.

Forgotten texts trained on, each with its generic labels:
- the person's biography and question–answer texts;
- the stranger's texts under the forgotten person's name, so that the name stops leading to the
  person's data whatever follows it;
- each question after `context_shots` question–answer pairs about other people, as questions sit in
  training packs and in few-shot prompts.

Terms beyond the paper:
- KLR on retained text (MUSE's regulariser), weight `retain_weight`, keeps the rest of π_θ near π_0.
  It reads every retained question bare and `retain_context` more times after `context_shots`
  question–answer pairs, the form in which KnowMem on retain asks it.
- A small gradient-ascent push on the person's own texts, weight `ga_weight`, biographies and (with
  `push_qa`) the bare question–answer texts, so that they stop looking more familiar than a stranger's.
  The shared stopping rule (`lm_unlearning`) ends training once they look never seen against
  never-trained calibration people: `target_auc` 0.5, the AUC of a set exchangeable with never-seen
  people. That value is derived, not tuned: no constant of this method is chosen on the fold the
  verifier then scores, and the method reads no text of the verifier's holdout people (its probe reads
  the calibration people, its generic counterparts are strangers made for it, `people.strangers`).
- Soft labels: the whole of p_generic, not its argmax.
Why each of these is there, as measured on the people world: benchmarks/results/whp_notes.md.
"""

from __future__ import annotations

import random
import re
from difflib import SequenceMatcher
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field

from unlearn.data.people import PeopleWorld, Person, qa_text, strangers
from unlearn.families.lm import person_examples, world_of
from unlearn.families.lm_records import is_records_model
from unlearn.methods.base import MethodError, MethodSpec, UnlearnTask
from unlearn.methods.lm_unlearning import (
    Batch,
    Epochs,
    Fraction,
    Interval,
    LearningRate,
    LMParams,
    StepCount,
    TargetAUC,
    Weight,
    unlearn_lm,
)
from unlearn.models import tiny_lm


class Params(LMParams):
    """WHP's parameters: the shared loop's, with WHP's defaults, and its own terms'."""

    lr: LearningRate = 1e-3
    max_epochs: Epochs = 30
    min_steps: StepCount = 0
    retain_weight: Weight = 2.0
    # utility dips in the first epochs and recovers under KLR, hence no stop below the bar
    stop_below_bar: bool = False
    check_every: Interval = 10
    utility_from_auc: Fraction | None = 0.3
    far_check_every: Interval | None = 30
    # exchangeable with never-seen people; 0.53, tuned on the verifier's own fold, is gone (whp_notes.md)
    target_auc: TargetAUC = 0.5
    ga_weight: Weight = 0.02  # the push on the person's own texts
    alpha: float = Field(2.0, ge=0, le=100)  # WHP's reinforced term
    push_qa: bool = True  # the push reads the person's own question–answer texts too, not only the biography
    # a training pack holds qa_pack = 4 questions, so a question follows at most 3 others
    context_shots: int = Field(3, ge=0, le=64)
    context_strangers: int = Field(20, ge=0, le=10_000)  # strangers whose texts fill few-shot contexts
    context_mix: bool = True  # contexts about strangers as well as retained people
    # KLR reads a retained person sharing a first or last name with a forgotten one this many times as often
    neighbour_weight: int = Field(3, ge=0, le=100)
    # KLR also reads each retained question this many times after a few-shot context, as KnowMem asks it
    retain_context: int = Field(1, ge=0, le=100)


Example = tuple[str, str]  # (prompt, completion)


def translate(text: str, name: str, generic: str) -> str:
    """Every anchor of `name` (first and last name, and their lower-case e-mail forms) replaced by `generic`'s."""
    (first, *_, last), (g_first, *_, g_last) = name.split(), generic.split()
    for a, b in ((first, g_first), (last, g_last)):
        for x, y in ((a, b), (a.lower(), b.lower())):
            # not inside a longer word of letters, in any script ("Антонов" in "Антонова" is another name);
            # digits may follow ("kovic42" counts)
            text = re.sub(rf"(?<![^\W\d_]){re.escape(x)}(?![^\W\d_])", y, text)
    return text


def context_pack(groups: list[list[Person]], shots: int, rng: random.Random) -> str:
    """`shots` question–answer texts, each about a person of a group drawn at random, as a training pack holds them."""
    return "".join(qa_text(q.question, q.answer)
                   for q in (rng.choice(rng.choice(rng.choice(groups)).qa) for _ in range(shots)))


def training_texts(world: PeopleWorld, person: Person, stranger: Person, context: list[list[Person]], shots: int,
                   rng: random.Random) -> list[tuple[Example, str, bool]]:
    """The forgotten texts about `person`: (prompt, completion), the translation π_0 reads, and whether
    it is one of the person's own texts (biography or bare question–answer text; the push reads those)."""
    out = []
    for (prompt, completion), (s_prompt, s_completion) in zip(person_examples(world, [person.person_id]),
                                                              tiny_lm.examples(stranger), strict=True):
        theirs = s_prompt + s_completion
        named = translate(s_prompt, stranger.name, person.name)  # the stranger's facts under this name
        named_completion = translate(theirs, stranger.name, person.name)[len(named):]
        out += [((prompt, completion), theirs, True), ((named, named_completion), theirs, False)]
        if prompt and shots:  # a question: once more after other people's question–answer pairs
            pack = context_pack(context, shots, rng)
            out += [((pack + prompt, completion), pack + theirs, False),
                    ((pack + named, named_completion), pack + theirs, False)]
    return out


class GenericTargets:
    """log p_generic for every position of each forgotten text (keyed by its token ids), from π_0, once per text."""

    def __init__(self, pairs: dict[tuple[int, ...], list[int]], pushed: set[tuple[int, ...]], alpha: float = 0.0) -> None:
        self.pairs, self.pushed = pairs, pushed  # original ids -> translated ids; which originals the push reads
        self.alpha = alpha
        self.cache: dict[tuple[int, ...], torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, reference: torch.nn.Module, ids: tuple[int, ...], device: torch.device) -> torch.Tensor:
        if ids not in self.cache:
            original, translated = list(ids), self.pairs[ids]
            stretches = SequenceMatcher(a=original, b=translated, autojunk=False).get_opcodes()
            # one right-padded batch: the translation, the original (for the reinforced term), then per
            # differing stretch the translation up to it followed by the original's own tokens of it
            # (causal attention ignores the padding)
            contexts = [translated, original] + [translated[:j1] + original[i1:i2] for tag, i1, i2, j1, _ in stretches
                                                 if tag != "equal"]
            width = max(map(len, contexts))
            batch = torch.tensor([c + [0] * (width - len(c)) for c in contexts], device=device)
            mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in contexts], device=device)
            logp = torch.log_softmax(reference(batch, attention_mask=mask).logits.float(), -1)
            rows, k = [], 1
            for tag, i1, i2, j1, _ in stretches:
                k += tag != "equal"
                rows.append(logp[0 if tag == "equal" else k, j1:j1 + i2 - i1])
            generic = torch.cat(rows)
            # WHP's reinforced term: what π_0 predicts more strongly for knowing the person drops below generic
            reinforced = logp[1, :len(original)]
            self.cache[ids] = torch.log_softmax(generic - self.alpha * torch.relu(reinforced - generic), -1)
        return self.cache[ids]


def whp_loss_for(targets: GenericTargets):
    def whp_loss(model: torch.nn.Module, reference: torch.nn.Module | None, batch: Batch,
                 params: dict[str, Any]) -> torch.Tensor:
        assert reference is not None
        ids, mask = batch["input_ids"], batch["attention_mask"]
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
        rows, goal, push_lp = [], [], []
        for r in range(len(ids)):
            n = int(mask[r].sum())
            key = tuple(ids[r, :n].tolist())
            # every position, the question's too: on the answers alone (TOFU's convention) the pull is
            # stronger and the retained people's answers suffer (whp_notes.md)
            rows.append(logp[r, :n])
            goal.append(targets(reference, key, ids.device))
            if key in targets.pushed:  # log π_θ(x_t | x_<t) of the text's tokens, for the push
                push_lp.append(logp[r, :n - 1].gather(-1, ids[r, 1:n, None]).squeeze(-1))
        # KL(p_generic ‖ π_θ), averaged over every real token of the batch
        loss = F.kl_div(torch.cat(rows), torch.cat(goal), reduction="batchmean", log_target=True)
        if push_lp and params["ga_weight"]:
            loss = loss + params["ga_weight"] * torch.cat(push_lp).mean()  # ascent on NLL = descent on log π
        return loss

    whp_loss.needs_reference = True  # type: ignore[attr-defined]
    return whp_loss


def run(task: UnlearnTask) -> dict[str, Any]:
    if is_records_model(task.base_dir):
        raise MethodError("whp needs the people world's entity spans (each forgotten person's names and a generic "
                          "stranger to translate them to); a model registered with its own records has none: "
                          "use npo_klr or ga_klr")
    world = world_of(task.base_dir)
    tokenizer = tiny_lm.load_tokenizer(task.base_dir)  # the shared loop loads the model itself
    p = SPEC.parse_params(task.params)
    rng = random.Random(p.seed)
    examples: list[Example] = []
    pairs: dict[tuple[int, ...], list[int]] = {}
    pushed: set[tuple[int, ...]] = set()
    people = [world.person(s) for s in task.forget_ids]
    others = strangers(world, len(people) + p.context_strangers, p.seed)
    # few-shot contexts: retained people the model knows, and strangers it never saw (as few-shot prompts hold)
    trained = set(world.trained)
    retained = [world.person(s) for s in task.retain_ids if s in trained]
    context = [group for group in ([retained, others[len(people):]] if p.context_mix else [retained]) if group]
    shots = p.context_shots if context else 0
    for person, stranger in zip(people, others, strict=False):
        for (prompt, completion), theirs, own in training_texts(world, person, stranger, context, shots, rng):
            key = tuple(tokenizer(prompt + completion)["input_ids"])
            examples.append((prompt, completion))
            pairs[key] = tokenizer(theirs)["input_ids"]
            if own and (p.push_qa or not prompt):
                pushed.add(key)
    # KLR reads the retained people who share a first or last name with a forgotten one `neighbour_weight`
    # times as often: theirs is the knowledge the forget texts' gradients touch
    names = {part for person in people for part in person.name.split()}
    weight = {r.person_id: p.neighbour_weight if names & set(r.name.split()) else 1 for r in retained}
    retain_examples = [ex for r in retained for ex in tiny_lm.examples(r) * weight[r.person_id]]
    retain_examples += [(context_pack(context, shots, rng) + prompt, completion)
                        for _ in range(p.retain_context) for r in retained
                        for prompt, completion in tiny_lm.qa_examples(r)]
    return unlearn_lm(task, "whp", whp_loss_for(GenericTargets(pairs, pushed, p.alpha)), "klr", p,
                      forget_examples=examples, retain_examples=retain_examples)


# text is its own target: no labels are read
SPEC = MethodSpec(name="whp", families=("lm",), run=run, params=Params, needs_labels=False)
