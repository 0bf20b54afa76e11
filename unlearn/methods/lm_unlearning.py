"""The fine-tuning loop MUSE's gradient baselines share; each method supplies its forget loss.

Each step: loss = L_forget(θ; forget batch) + w · L_reg(θ; retain batch)  (reg: none | GDR | KLR).
Forget batches are the forgotten people's biographies and question–answer texts; retain batches
are drawn from the retained people's. On a QA text the losses read the answer tokens only (the
question is the prompt), as TOFU-style unlearning does; a biography is read whole, as MUSE's text.

Early stopping and checkpoint choice follow MUSE (§4: stop at the first check where utility,
KnowMem on retain, falls below the bar; keep a checkpoint that met it), with the bar set
without the retrain model, which a service does not have yet when the method runs:
`utility_frac` × the base model's own KnowMem on retain (or `utility_floor` if given). A second,
reference-free stop ends training once the forgotten texts look never-seen: their Min-40%
Prob AUC against never-trained calibration people (not the verifier's holdout) reaches
`target_auc` (0.5: exchangeable with never-seen people). Checks run every `check_every` steps,
because one epoch moves that AUC by far more than PrivLeak's ±5% band; of the checkpoints that meet
the utility bar, the one whose AUC is closest to `target_auc` is kept (over-unlearning, AUC above
the target, fails PrivLeak as surely as under-unlearning); the starting model only if none meets it.
When training runs out of epochs, the final model is always one of the checkpoints, its utility scored.

On a model registered with its own records (`unlearn.families.lm_records`) the forget texts are the
forgotten train records' texts (and question–answer pairs, prompt and answer, where the records carry
them), the retain texts the other train records'; the probe compares the forget texts with the
calibration half of the holdout (never the verification half the verifier scores), and utility is KnowMem
on retained question–answer pairs where there are any, else the per-token likelihood exp(−mean NLL) of a
fixed sample of retained texts.

A method that scores utility only near the target (`utility_from_auc`) checks every
`far_check_every` steps until the AUC gets there: such a check can only report that the AUC is still
far from the target, and each costs a pass over every text of every calibration person.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import Field

from unlearn.artifacts import read_meta
from unlearn.data.people import qa_text
from unlearn.families import lm_records
from unlearn.families.lm import (
    N_SHOTS,
    HFLanguageModel,
    icl_prompt,
    likelihood,
    original_of,
    person_examples,
    privleak_texts,
    retain_sample,
    world_of,
)
from unlearn.methods.base import MethodError, MethodParams, MethodSpec, UnlearnTask, parse_params
from unlearn.methods.lm_regularisers import REGULARISERS
from unlearn.models import tiny_lm
from unlearn.verify import muse

Batch = dict[str, torch.Tensor]
ForgetLoss = Callable[[torch.nn.Module, torch.nn.Module | None, Batch, dict[str, Any]], torch.Tensor]

# Bounded types of the loop's parameters, shared so that a method changing a default keeps the bounds.
LearningRate = Annotated[float, Field(gt=0, le=1)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Weight = Annotated[float, Field(ge=0, le=1000)]
Epochs = Annotated[int, Field(ge=0, le=10_000)]
StepCount = Annotated[int, Field(ge=0, le=1_000_000)]
Interval = Annotated[int, Field(ge=1, le=1_000_000)]  # steps between checks
# an AUC target above 1 is never met, so training runs all its epochs (the trade-off benchmark's free runs)
TargetAUC = Annotated[float, Field(ge=0, le=2)]


class LMParams(MethodParams):
    """The shared loop's parameters; a method subclasses it to change a default or add its own terms."""

    lr: LearningRate = 1e-4  # AdamW, no weight decay
    # max_epochs over the forget texts, but at least min_steps: one person is a single batch per epoch
    max_epochs: Epochs = 10
    min_steps: StepCount = 60
    batch_size: int = Field(8, ge=1, le=1024)
    retain_weight: Weight = 5.0  # w, the retain regulariser's weight
    # the utility bar, as a fraction of the base model's own KnowMem on retain: the base model knows the
    # retained people about as well as its retrain reference does, so 0.85 of its own utility sits a
    # little under the verifier's bar, 0.9 of the reference's (the probe reads 15 people, the verifier 50)
    utility_frac: Fraction = 0.85
    utility_floor: Fraction | None = None  # an absolute bar instead of utility_frac's
    # retained people the utility probe reads (records models: 4 × this many retained records, a person's
    # four questions)
    probe_people: int = Field(15, ge=1, le=100_000)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    check_every: Interval = 2
    target_auc: TargetAUC = 0.5
    # also score KnowMem on the forgotten people at every check (the trade-off benchmark's curves)
    track_forget_knowledge: bool = False
    # MUSE stops at the first check below the utility bar; a method whose utility dips and recovers
    # trains on and keeps the checkpoint above the bar closest to the AUC target
    stop_below_bar: bool = True
    # score utility only at checks whose AUC has reached this (None: at every check); a method that
    # keeps training below the bar (stop_below_bar False) only needs it where a checkpoint may be kept
    utility_from_auc: Fraction | None = None
    # checks while the AUC is below utility_from_auc come this many steps apart (None: check_every)
    far_check_every: Interval | None = None


DEFAULTS: dict[str, Any] = LMParams().model_dump()  # the shared loop's defaults, as the benchmarks read them


def probe_data(world, forget_ids: list[str], retain_ids: list[str], n: int) -> muse.MuseData:
    """Cheap scores for stopping: KnowMem on a few retained people; the forgotten people's texts against
    never-trained calibration people's, as the verifier reads PrivLeak (and, when tracked, KnowMem on the
    forgotten people)."""
    retain = [world.person(s) for s in retain_sample(retain_ids, n, seed=1)]
    forget = [world.person(s) for s in forget_ids]
    return muse.MuseData(verbmem_prompts=[], verbmem_truths=[],
                         knowmem_forget=[(q.question, q.answer) for p in forget for q in p.qa],
                         knowmem_retain=[(q.question, q.answer) for p in retain for q in p.qa],
                         icl=icl_prompt(world), privleak_forget=privleak_texts(world, forget_ids),
                         privleak_holdout=privleak_texts(world, world.calibration),
                         qa_prompt=lambda q: f"Question: {q}\nAnswer:")


def records_probe(rec: Any, forget_ids: list[str], retain_ids: list[str],
                  n: int) -> tuple[muse.MuseData, list[str] | None]:
    """A records model's probe: the trained forget texts against the holdout's calibration half
    (`lm_records.holdout_halves`), KnowMem on up to 4·`n` retained records' question–answer pairs; and the
    retained texts whose likelihood is the utility instead where the records carry no such pairs (else None)."""
    forget = lm_records.trained(rec, forget_ids)
    retain = lm_records.sample(lm_records.trained(rec, retain_ids), 4 * n, seed=1)
    calibration = lm_records.holdout_halves(rec)[1]
    if not lm_records.texts(rec, calibration):
        raise MethodError("the records' holdout has no calibration half (it needs holdout records of at least "
                          "two subjects): the stopping probe has no never-seen texts to compare with")
    probe = muse.MuseData(verbmem_prompts=[], verbmem_truths=[], knowmem_forget=lm_records.qa_pairs(rec, forget),
                          knowmem_retain=lm_records.qa_pairs(rec, retain),
                          icl="".join(qa_text(q, a) for q, a in lm_records.qa_pairs(rec, calibration)[:N_SHOTS]),
                          privleak_forget=lm_records.texts(rec, forget),
                          privleak_holdout=lm_records.texts(rec, calibration), qa_prompt=qa_text)
    return probe, None if probe.knowmem_retain else lm_records.texts(rec, retain)


def measure_probe(lm: HFLanguageModel, probe: muse.MuseData, track_forget: bool = False,
                  utility_from_auc: float | None = None,
                  utility_texts: list[str] | None = None) -> dict[str, float | None]:
    """Utility (KnowMem on the probe's retained people, or the likelihood of `utility_texts` where given) and
    the forget-vs-unseen AUC; utility is None, not scored, while the AUC is below `utility_from_auc`
    (generation is the probe's dearer half)."""
    s = muse.score_model(lm, probe, parts=("privleak",) + (("knowmem_forget",) * track_forget))
    auc = muse.privleak_auc(s.mink_forget, s.mink_holdout)
    m: dict[str, float | None] = {"utility": None, "auc_vs_unseen": auc}
    if utility_texts is not None:
        m["utility"] = likelihood(lm, utility_texts)
    elif utility_from_auc is None or auc >= utility_from_auc:
        m["utility"] = float(muse.score_model(lm, probe, parts=("knowmem_retain",)).knowmem_retain.mean())
    if track_forget:
        m["knowmem_forget"] = float(s.knowmem_forget.mean())
    return m


def unlearn_lm(task: UnlearnTask, method: str, forget_loss: ForgetLoss, regulariser: str,
               params: LMParams, forget_examples: list[tuple[str, str]] | None = None,
               retain_examples: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Fine-tune on the forgotten people's texts, regularised on the retained people's (either set can be a
    method's own: `forget_examples`, `retain_examples`). `params` are the request's, validated; the forget
    loss reads them as a dict."""
    p = params.model_dump()
    if regulariser not in REGULARISERS:
        raise MethodError(f"unknown regulariser {regulariser!r}")
    if not task.forget_ids:
        raise MethodError("nothing to forget")
    t0 = time.perf_counter()
    torch.manual_seed(p["seed"])
    rng = random.Random(p["seed"])
    model, tokenizer = tiny_lm.load(task.base_dir, task.device)
    needs_reference = getattr(forget_loss, "needs_reference", False) or regulariser == "klr"
    reference = copy.deepcopy(model).eval().requires_grad_(False) if needs_reference else None
    reg = REGULARISERS[regulariser]
    utility_texts = None
    on_records = lm_records.is_records_model(task.base_dir)
    if on_records:
        rec = lm_records.records_of(task.base_dir)
        eos = tokenizer.eos_token or ""
        own_forget = lm_records.examples(rec, lm_records.trained(rec, task.forget_ids), eos)
        own_retain = lm_records.examples(rec, lm_records.trained(rec, task.retain_ids), eos)
        probe, utility_texts = records_probe(rec, task.forget_ids, task.retain_ids, p["probe_people"])
    else:
        world = world_of(task.base_dir)
        own_forget, own_retain = person_examples(world, task.forget_ids), person_examples(world, task.retain_ids)
        probe = probe_data(world, task.forget_ids, task.retain_ids, p["probe_people"])
    forget_texts = list(forget_examples) if forget_examples is not None else own_forget
    retain_texts = [] if reg is None else list(retain_examples) if retain_examples is not None else own_retain
    if not forget_texts:
        raise MethodError("none of the forgotten samples is a trained text: nothing to forget")
    lm = HFLanguageModel(model, tokenizer, task.device)
    measure = partial(measure_probe, lm, probe, track_forget=bool(p["track_forget_knowledge"]),
                      utility_from_auc=p["utility_from_auc"], utility_texts=utility_texts)
    start = measure(utility_from_auc=None)  # the bar needs utility
    floor = p["utility_floor"] if p["utility_floor"] is not None else p["utility_frac"] * start["utility"]
    opt = torch.optim.AdamW(model.parameters(), lr=p["lr"], weight_decay=0.0)
    bs = p["batch_size"]
    curve: list[dict[str, Any]] = [{"epoch": 0, "step": 0, **start}]
    chosen, chosen_at, stop, step = copy.deepcopy(model.state_dict()), curve[0], "max_epochs", 0

    def distance(m: dict[str, Any]) -> float:
        return abs(m["auc_vs_unseen"] - p["target_auc"])

    def check(epoch: int, score_utility: bool = False) -> str:
        """Measure the model at this step, keep it if it is the best checkpoint so far; the stop it calls for."""
        nonlocal chosen, chosen_at
        m = {"epoch": epoch, "step": step, **(measure(utility_from_auc=None) if score_utility else measure())}
        curve.append(m)
        utility = "not scored" if m["utility"] is None else f"{m['utility']:.3f}"
        task.progress(epoch / epochs, f"{method} step {step}: utility {utility} "
                      f"(bar {floor:.3f}), forget-vs-unseen AUC {m['auc_vs_unseen']:.3f}")
        # the starting model is kept only if no trained checkpoint meets the bar: while every
        # forgotten text is still more familiar than every unseen one, the AUC (≈ 0) cannot rank them
        if m["utility"] is not None and m["utility"] >= floor and (
                chosen_at is curve[0] or distance(m) <= distance(chosen_at)):
            chosen, chosen_at = copy.deepcopy(model.state_dict()), m
        if m["utility"] is not None and m["utility"] < floor and p["stop_below_bar"]:
            return "utility below bar"
        if m["auc_vs_unseen"] >= p["target_auc"]:
            return "forget set looks never seen"
        return "max_epochs"

    next_check = p["check_every"]
    epochs = max(p["max_epochs"], math.ceil(p["min_steps"] / math.ceil(len(forget_texts) / bs)))
    model.train()
    for epoch in range(1, epochs + 1):
        rng.shuffle(forget_texts)
        for i in range(0, len(forget_texts), bs):
            batch = tiny_lm.encode_examples(tokenizer, forget_texts[i:i + bs], task.device)
            loss = forget_loss(model, reference, batch, p)
            if reg is not None:
                retain_batch = tiny_lm.encode_examples(
                    tokenizer, rng.sample(retain_texts, min(bs, len(retain_texts))), task.device)
                loss = loss + p["retain_weight"] * reg(model, reference, retain_batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            # the final step is always a check, its utility scored, so that the steps since the last
            # scheduled check (or checks far below the AUC where utility is scored) can still be kept
            last = epoch == epochs and i + bs >= len(forget_texts)
            if step < next_check and not last:
                continue
            stop = check(epoch, score_utility=last)
            far = p["utility_from_auc"] is not None and curve[-1]["auc_vs_unseen"] < p["utility_from_auc"]
            next_check = step + ((p["far_check_every"] or p["check_every"]) if far else p["check_every"])
            if stop != "max_epochs":
                break
        if stop != "max_epochs":
            break
    chosen_epoch = chosen_at["epoch"]
    model.load_state_dict(chosen)
    meta = read_meta(task.base_dir)
    meta["unlearned"] = {"method": method, "forget": len(task.forget_ids), "epoch": chosen_epoch,
                         "step": chosen_at["step"],
                         "base": meta.get("model")}
    if on_records:  # the holdout gate compares with the registered model, wherever the lineage has got to
        meta["original_dir"] = str(original_of(task.base_dir))
    tiny_lm.save(model.eval(), tokenizer, meta, Path(task.out_dir))
    return {"method": method, "params": {k: v for k, v in p.items()}, "regulariser": regulariser,
            "epochs_run": curve[-1]["epoch"], "epoch_chosen": chosen_epoch, "step_chosen": chosen_at["step"],
            "steps_run": step, "stop": stop,
            "utility_bar": float(floor), "curve": curve, "seconds": time.perf_counter() - t0}


def muse_baseline_specs(name: str, forget_loss: ForgetLoss,
                        params: type[LMParams]) -> tuple[MethodSpec, MethodSpec, MethodSpec]:
    """MUSE's trio for one forget loss: alone (`name`), + GDR (`name_gdr`), + KLR (`name_klr`), all three
    with the parameters `params`."""
    def run(task: UnlearnTask, method: str, regulariser: str) -> dict[str, Any]:
        return unlearn_lm(task, method, forget_loss, regulariser, parse_params(params, method, task.params))

    names = {r: name if r == "none" else f"{name}_{r}" for r in ("none", "gdr", "klr")}
    # text is its own target: no labels are read
    alone, gdr, klr = (MethodSpec(name=names[r], families=("lm",), run=partial(run, method=names[r], regulariser=r),
                                  params=params, needs_labels=False) for r in names)
    return alone, gdr, klr


def sequence_logprob(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """log π(y) = Σ_t log π(y_t | y_<t) of each sequence in the batch, shape (B,)."""
    return tiny_lm.token_logprobs_batch(model, batch).sum(1)


__all__ = ["DEFAULTS", "LMParams", "measure_probe", "muse_baseline_specs", "probe_data", "records_probe",
           "sequence_logprob", "unlearn_lm"]
