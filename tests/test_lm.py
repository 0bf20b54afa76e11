"""The language-model family end to end: tiny GPT-2 artifacts, the MUSE gate, and the unlearning methods.

The target (`people-lm`) and its retrain reference (`people-lm-retrain`) are built once into the
shared zoo cache; everything else reuses them.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from unlearn.artifacts import read_meta
from unlearn.families import Scope, get_family
from unlearn.families.lm import HFLanguageModel, person_texts, world_of
from unlearn.methods import UnlearnTask, get_method, methods_for
from unlearn.methods.ga import ga_loss
from unlearn.methods.lm_regularisers import gdr, klr
from unlearn.methods.lm_unlearning import sequence_logprob
from unlearn.methods.npo import npo_loss
from unlearn.models import tiny_lm
from unlearn.zoo import ensure

LM_METHODS = ["ga", "ga_gdr", "ga_klr", "npo", "npo_gdr", "npo_klr", "whp"]


@pytest.fixture(scope="module")
def target(zoo_dir: Path) -> Path:
    return ensure("people-lm", zoo_dir)


@pytest.fixture(scope="module")
def reference(zoo_dir: Path) -> Path:
    return ensure("people-lm-retrain", zoo_dir)


@pytest.fixture(scope="module")
def loaded(target: Path):
    return tiny_lm.load(target)


@pytest.fixture(scope="module")
def nothing_report(target: Path, reference: Path, tmp_path_factory):
    """The unchanged target's verdict on the default fold (what doing nothing scores), and the folder of
    its report."""
    world, report = world_of(target), tmp_path_factory.mktemp("nothing")
    return get_family("lm").verify(target, reference, world.forget, world.retain, Scope(type="subject"),
                                   report_dir=report), report


@pytest.fixture(scope="module")
def nothing(nothing_report):
    return nothing_report[0]


@pytest.fixture(scope="module")
def auto_run(target: Path, tmp_path_factory):
    """The auto method's candidate on the default fold, with seed 1 (one slow run, read by two tests):
    (its facts, its folder, the progress fractions it reported)."""
    world = world_of(target)
    method = get_family("lm").auto_method(target, Scope(type="subject"))
    out, seen = tmp_path_factory.mktemp("auto") / "cand", []
    facts = get_method(method).run(UnlearnTask("lm", target, out, list(world.forget), list(world.retain),
                                               params={"seed": 1}, progress=lambda f, m: seen.append(f)))
    return facts, out, seen


def test_artifact_is_a_pretrained_folder(target: Path, reference: Path, loaded) -> None:
    meta = read_meta(target)
    assert meta["family"] == "lm" and meta["dataset"] == {"name": "people", "seed": 0, "n_people": 400}
    assert (target / "config.json").exists() and (target / "tokenizer.json").exists()
    world = world_of(target)
    assert read_meta(reference)["retrained_on"] == len(world.retain)
    model, tok = loaded
    bio = world.person(world.forget[0]).bio
    assert tok.decode(tok(bio)["input_ids"], skip_special_tokens=True) == bio
    samples = get_family("lm").samples(target)
    assert len(samples) == 400 and sum(s.split == "train" for s in samples) == len(world.trained)
    # one tokenizer for the target and its reference, learned from people no model is trained on
    assert (target / "tokenizer.json").read_bytes() == (reference / "tokenizer.json").read_bytes()
    corpus = set(tiny_lm.tokenizer_corpus())
    assert not any(world.person(s).bio in corpus for s in world.trained) and len(corpus) == 400 * 5


def test_batched_greedy_generation_matches_one_by_one(target: Path, loaded) -> None:
    model, tok = loaded
    world = world_of(target)
    prompts = [world.person(s).bio[:n] for s, n in zip(world.forget[:4], (12, 30, 45, 20), strict=True)]
    batched = tiny_lm.generate(model, tok, prompts, max_new_tokens=20)
    single = [tiny_lm.generate(model, tok, [p], max_new_tokens=20)[0] for p in prompts]
    assert batched == single


def test_the_target_memorised_and_fails_the_gate_and_the_reference_passes(target, reference,
                                                                          nothing_report) -> None:
    fam, world, (verdict, report_dir) = get_family("lm"), world_of(target), nothing_report
    crit = {c.name: c for c in verdict.criteria}
    assert set(crit) == {"verbmem", "knowmem_forget", "privleak", "privleak_bio", "privleak_qa", "knowmem_retain"}
    assert not verdict.passed
    assert crit["verbmem"].value > crit["verbmem"].reference + 0.3  # well above retrain
    assert not crit["verbmem"].passed and not crit["knowmem_forget"].passed
    for name in ("privleak", "privleak_bio", "privleak_qa"):  # AUC near 0 on every kind: a member set
        assert not crit[name].passed and crit[name].value < -0.5, crit[name]
    report = json.loads((report_dir / "muse_report.json").read_text())
    assert report["verdict"] == "fail" and all(report["criteria"][k]["ci"] for k in crit)
    same = fam.verify(reference, reference, world.forget, world.retain, Scope(type="subject"))
    assert same.passed, same.reasons


def test_npo_gradient_at_the_reference_is_the_sequence_log_likelihood_gradient(target, loaded) -> None:
    """At θ = θ_ref, dL_NPO/d log π_θ(y) = 2σ(0) = 1 per sequence: the step equals GA on Σ_t log π."""
    model, tok = loaded
    world = world_of(target)
    batch = tiny_lm.encode(tok, person_texts(world, world.forget[:2]), "cpu")
    reference = tiny_lm.load(target)[0]
    loss = npo_loss(model, reference, batch, {"beta": 0.1})
    assert loss.item() == pytest.approx(20 * torch.log(torch.tensor(2.0)).item(), rel=1e-4)  # (2/β)·log 2
    g_npo = torch.autograd.grad(loss, list(model.parameters()))
    g_seq = torch.autograd.grad(sequence_logprob(model, batch).mean(), list(model.parameters()))
    for a, b in zip(g_npo, g_seq, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)
    assert float(klr(model, reference, batch)) == pytest.approx(0.0, abs=1e-6)
    assert float(ga_loss(model, None, batch, {})) == pytest.approx(-float(gdr(model, None, batch)))


def test_lm_methods_are_registered() -> None:
    assert set(LM_METHODS) <= set(methods_for("lm"))
    assert get_method("npo_klr").families == ("lm",)


@pytest.fixture(scope="module")
def auto_verdict(auto_run, reference: Path):
    world = world_of(reference)
    return get_family("lm").verify(auto_run[1], reference, world.forget, world.retain, Scope(type="subject"))


@pytest.mark.slow
def test_the_auto_lm_method_forgets_within_the_service_contract(target, auto_run, auto_verdict, nothing) -> None:
    """The auto method moves every forgetting criterion from the target's value towards the reference's,
    keeps the checkpoint whose forget-vs-calibration AUC is closest to its target among those above its
    utility bar, and keeps the retained people's knowledge above the gate's bar.
    (All four gates, by seed: see benchmarks/results/muse.md.)"""
    facts, cand, seen = auto_run
    method = get_family("lm").auto_method(target, Scope(type="subject"))
    assert seen and seen[-1] > 0 and facts["step_chosen"] >= 1
    checked = [c for c in facts["curve"] if c["utility"] is not None and c["utility"] >= facts["utility_bar"]]
    goal = facts["params"]["target_auc"]
    assert min(abs(c["auc_vs_unseen"] - goal) for c in checked) == abs(
        next(c for c in facts["curve"] if c["step"] == facts["step_chosen"])["auc_vs_unseen"] - goal)
    assert read_meta(cand)["unlearned"]["method"] == method
    # checks far below the AUC at which utility is scored come far_check_every steps apart, the rest check_every
    p, checks = facts["params"], facts["curve"][1:]
    assert checks[-1]["step"] == facts["steps_run"]  # the final model is always measured
    if facts["stop"] == "max_epochs":  # with its utility scored, wherever the schedule had put the next check
        assert checks[-1]["utility"] is not None
        checks = checks[:-1] if len(checks) > 1 and checks[-1]["step"] - checks[-2]["step"] not in (
            p["check_every"], p["far_check_every"]) else checks
    assert checks[0]["step"] == p["check_every"] and any(c["auc_vs_unseen"] < p["utility_from_auc"] for c in checks)
    for a, b in itertools.pairwise(checks):
        near = a["auc_vs_unseen"] >= p["utility_from_auc"]
        assert b["step"] - a["step"] == (p["check_every"] if near else p["far_check_every"]), (a, b)
    before = {c.name: c for c in nothing.criteria}
    after = {c.name: c for c in auto_verdict.criteria}
    assert after["verbmem"].value < before["verbmem"].value - 0.2
    assert after["knowmem_forget"].value < before["knowmem_forget"].value
    assert after["privleak"].value > before["privleak"].value  # towards the reference, if far from it
    # the checkpoint is chosen above the utility bar on a probe of 15 people; the verifier reads 50
    assert after["knowmem_retain"].passed, after["knowmem_retain"]


@pytest.mark.slow
def test_whp_forgets_on_the_default_world_where_doing_nothing_does_not(auto_run, auto_verdict, nothing) -> None:
    """The gate's bars are the spread between exact retrains (benchmarks/results/gate_calibration.md), and
    C3 reads the raw documents pooled and per kind. A pass of every gate on one seed is a draw (whp's rate
    over seeds is in benchmarks/results/muse.md), so this asserts what one run can show: the unchanged
    original fails C1, C2 and every C3 by far; whp's candidate (the auto method's, seed 1) meets C1 and C4,
    lands within twice the pooled C3 band, and each kind's C3 at most three quarters as far from the
    retrain as the original's."""
    assert auto_run[0]["method"] == "whp"
    crit = {c.name: c for c in auto_verdict.criteria}
    c3 = ("privleak", "privleak_bio", "privleak_qa")
    assert set(crit) == {"verbmem", "knowmem_forget", *c3, "knowmem_retain"}
    assert all(crit[name].passed for name in ("verbmem", "knowmem_retain")), auto_verdict.reasons
    assert abs(crit["privleak"].value) <= 2 * crit["privleak"].threshold, auto_verdict.reasons
    before = {c.name: c for c in nothing.criteria}
    assert not before["verbmem"].passed and not before["knowmem_forget"].passed
    assert all(not before[name].passed and before[name].value < -0.5 for name in c3)  # AUC near 0
    # per kind, whp's biographies can land on the over-unlearned side (benchmarks/results/muse.md); what one
    # run shows is that each kind is at most three quarters as far from the retrain as doing nothing's
    assert all(abs(crit[name].value) <= 0.75 * abs(before[name].value) for name in c3), auto_verdict.reasons


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ga_gdr"])
def test_another_method_runs_and_forgets_something(method, target, tmp_path) -> None:
    world = world_of(target)
    # a few steps: enough to move the forgotten text, not to measure how well the method forgets
    get_method(method).run(UnlearnTask("lm", target, tmp_path / "cand", list(world.forget), list(world.retain),
                                       params={"max_epochs": 1, "min_steps": 0}))
    before = HFLanguageModel.load(target).token_logprobs([world.person(world.forget[0]).bio])[0].sum()
    after = HFLanguageModel.load(tmp_path / "cand").token_logprobs([world.person(world.forget[0]).bio])[0].sum()
    assert after < before


def test_whp_swaps_every_anchor_of_a_name() -> None:
    from unlearn.methods.whp import translate

    text = "Ada Kovic was born. Ada's mail: ada.kovic42@post.net. Her parent is Bea Kovic. Adam Kovicz stays."
    assert translate(text, "Ada Kovic", "Vera Moreau") == (
        "Vera Moreau was born. Vera's mail: vera.moreau42@post.net. Her parent is Bea Moreau. Adam Kovicz stays.")


def test_whp_anchors_are_whole_words_in_every_script() -> None:
    """A name inside a longer word of another script's letters is another name ("Антонов" in "Антонова");
    a Japanese name (family name first, as the Faker world writes it) swaps part by part."""
    from unlearn.methods.whp import translate

    text = "Жанна Антонов lives here. Жанна's sister is Ольга Антонова."
    assert translate(text, "Жанна Антонов", "Вера Смирнов") == (
        "Вера Смирнов lives here. Вера's sister is Ольга Антонова.")
    assert translate("渡辺 陽子 was born. 陽子 works. 渡辺 翼.", "渡辺 陽子", "木村 淳") == "木村 淳 was born. 淳 works. 木村 翼."


class _PrefixSum(torch.nn.Module):
    """A stand-in π_0 whose prediction at position t names the sum of the tokens it has read (mod 64)."""

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        from types import SimpleNamespace

        return SimpleNamespace(logits=10.0 * torch.nn.functional.one_hot(ids.cumsum(1) % 64, 64).float())


def test_whp_generic_labels_read_the_translation_and_spell_out_differing_stretches() -> None:
    from unlearn.methods.whp import GenericTargets

    original, translated = (1, 2, 3, 9, 4), [1, 2, 7, 8, 9, 4]
    rows = GenericTargets({original: translated}, set())(_PrefixSum(), original, torch.device("cpu"))
    # equal stretches read the translation (1, 1+2; then 1+2+7+8+9, +4); inside the differing stretch
    # π_0 reads the translation up to it and then the original's own token: 1+2+3
    assert rows.argmax(-1).tolist() == [1, 3, 6, 27, 31]


def test_whp_reinforced_term_demotes_what_knowing_the_original_predicts() -> None:
    from unlearn.methods.whp import GenericTargets

    original, translated = (1, 2, 3, 9, 4), [1, 2, 7, 8, 9, 4]
    plain = GenericTargets({original: translated}, set())(_PrefixSum(), original, torch.device("cpu"))
    rows = GenericTargets({original: translated}, set(), alpha=1.0)(_PrefixSum(), original, torch.device("cpu"))
    # reading the original, π_0 predicts its prefix sums 1, 3, 6, 15, 19; where the generic reading
    # agrees (the first three positions) nothing changes, where it does not, the original's prediction
    # becomes the least likely token and the generic one stays the most likely
    assert torch.allclose(rows[:3], plain[:3])
    assert rows.argmax(-1).tolist() == [1, 3, 6, 27, 31]
    assert rows[3:].argmin(-1).tolist() == [15, 19] and plain[3:].argmin(-1).tolist() != [15, 19]


def test_whp_strangers_are_nobody_in_the_world(target: Path) -> None:
    from unlearn.data.people import strangers

    world = world_of(target)
    people = strangers(world, 40, seed=0)
    names = [p.name for p in people]
    assert len(set(names)) == 40 and not set(names) & {p.name for p in world.people}
    assert not {p.person_id for p in people} & {p.person_id for p in world.people}
    assert [p.bio for p in strangers(world, 40, seed=0)] == [p.bio for p in people]
    assert names != [p.name for p in strangers(world, 40, seed=1)]


def test_whp_translations_hold_none_of_the_forgotten_persons_data(target: Path) -> None:
    import random

    from unlearn.data.people import strangers
    from unlearn.methods.whp import training_texts

    world = world_of(target)
    person, stranger = world.person(world.forget[0]), strangers(world, 1, seed=0)[0]
    texts = training_texts(world, person, stranger, [[world.person(s) for s in world.retain]], 3, random.Random(0))
    assert sum(own for *_, own in texts) == 5 and len(texts) == 2 + 4 * 4  # own + named, twice per question
    own = [person.name, person.qa[0].answer, person.qa[2].answer]  # name, birth date, phone
    for (prompt, completion), theirs, _ in texts:
        assert not any(datum in theirs for datum in own)  # π_0 reads a stranger, never this person
        assert person.name in prompt + completion  # every text the model trains on is about this person
    # the person's own texts come first, each translated into the stranger's of the same kind
    assert texts[0][0] == ("", tiny_lm.bio_text(person)) and texts[0][1] == tiny_lm.bio_text(stranger)
    named_bio = texts[1][0][1]
    assert named_bio.startswith(person.name) and stranger.qa[1].answer in named_bio


def test_the_general_utility_gate_reads_the_models_general_questions(target, reference, tmp_path) -> None:
    """A people-world model that carries `general_questions` (as a model fine-tuned from a pretrained base
    does) is gated on them too: the reference's own copy answers them as the reference does and passes; a
    copy whose weights were perturbed answers fewer and fails."""
    import shutil

    from unlearn.artifacts import write_meta
    from unlearn.families.lm import general_utility_criterion
    from unlearn.verify import general_knowledge

    fam, world = get_family("lm"), world_of(target)
    # numbers the retained people's question–answer texts taught both models: their house numbers
    questions = [(qa.question, qa.answer.split()[0]) for s in world.retain[:40]
                 for qa in world.person(s).qa if qa.question.startswith("Where does")]
    ref_lm = HFLanguageModel.load(reference)
    known = general_knowledge.answers_right(ref_lm, questions)
    assert known.mean() > 0.5  # otherwise the gate below could not tell a damaged model from this one
    cand = tmp_path / "cand"
    shutil.copytree(reference, cand)
    write_meta(cand, {**read_meta(cand), "general_questions": [list(q) for q in questions]})
    verdict = fam.verify(cand, reference, world.forget, world.retain, Scope(type="subject"))
    crit = {c.name: c for c in verdict.criteria}
    assert crit["general_utility"].value == pytest.approx(known.mean())
    assert crit["general_utility"].reference == pytest.approx(known.mean()) and crit["general_utility"].passed
    assert crit["general_utility"].threshold == pytest.approx(verdict.info["thresholds"]["utility_frac"] * known.mean())
    model, tok = tiny_lm.load(reference)
    with torch.no_grad():
        torch.manual_seed(0)
        for w in model.parameters():
            w.add_(0.05 * torch.randn_like(w))
    damaged = general_utility_criterion(HFLanguageModel(model, tok, "cpu"), reference, questions,
                                        verdict.info["thresholds"]["utility_frac"])
    assert damaged.value < damaged.threshold and not damaged.passed, damaged


def test_a_run_that_ends_between_checks_keeps_its_final_model(target, tmp_path) -> None:
    """One person, two epochs (6 steps) and no check due before the end: the final model is measured, its
    utility scored, and kept, where the loop used to hand back its unchanged input."""
    world = world_of(target)
    facts = get_method("whp").run(UnlearnTask("lm", target, tmp_path / "cand", [world.forget[0]],
                                               list(world.retain),
                                               params={"max_epochs": 2, "check_every": 1000, "utility_floor": 0.0}))
    assert [c["step"] for c in facts["curve"]] == [0, facts["steps_run"]] and facts["steps_run"] > 0
    assert facts["curve"][-1]["utility"] is not None and facts["step_chosen"] == facts["steps_run"]
    before, after = tiny_lm.load(target)[0].state_dict(), tiny_lm.load(tmp_path / "cand")[0].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
