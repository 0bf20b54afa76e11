"""MUSE metric code on hand-made cases with known answers, the gate's logic, and the people world."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from unlearn.data.people import FOLDS, load, qa_text
from unlearn.verify import muse


def test_rouge_l_f1_known_values() -> None:
    assert muse.rouge_l_f1("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    # LCS("a b c d", "a c") = 2: precision 1, recall 1/2, F1 2/3
    assert muse.rouge_l_f1("a b c d", "a c") == pytest.approx(2 / 3)
    assert muse.rouge_l_f1("alpha beta", "gamma delta") == 0.0
    # rouge-score's tokenizer splits on punctuation and lowercases: a phone number is two tokens
    assert muse.rouge_l_f1("55-123", "55 123") == pytest.approx(1.0)


def _ascii_corpus() -> list[str]:
    """Every text of a people world, and random printable ASCII strings (punctuation, digits, case)."""
    import random
    import string

    from unlearn.models import tiny_lm

    w = load(seed=0)
    texts = [t for p in w.people for t in (p.bio, *tiny_lm.qa_texts(p))]
    rng = random.Random(0)
    texts += ["".join(rng.choice(string.printable) for _ in range(rng.randint(0, 80))) for _ in range(2000)]
    return texts


def test_rouge_tokens_are_rouge_scores_default_on_ascii() -> None:
    """Fault 4 of the real-LM issue: the scorer's tokenizer changed, but on ASCII text it must give exactly
    rouge-score's default tokens (MUSE's ROUGE), text by text, and so the same ROUGE-L."""
    from rouge_score import rouge_scorer, tokenizers

    default, ours = tokenizers.DefaultTokenizer(use_stemmer=False), muse.ScriptTokenizer()
    corpus = _ascii_corpus()
    assert len(corpus) > 3000
    for text in corpus:
        assert ours.tokenize(text) == default.tokenize(text), text
    plain = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    for a, b in zip(corpus[::7], corpus[3::7], strict=False):
        assert muse.rouge_l_f1(a, b) == plain.score(a, b)["rougeL"].fmeasure


def test_rouge_keeps_the_letters_and_digits_of_every_script() -> None:
    """The default tokenizer keeps only a–z and 0–9: "Ørsted" read as "rsted", "Malmö" as "malm", and
    "北京市" as nothing at all, so memorised non-ASCII text read as forgotten (or the reverse)."""
    from rouge_score import rouge_scorer

    plain = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    assert plain.score("北京市", "北京市")["rougeL"].fmeasure == 0.0  # the fault, as it was
    assert plain.score("Ørsted", "rsted")["rougeL"].fmeasure == 1.0
    assert muse.rouge_l_f1("北京市", "北京市") == 1.0
    assert muse.rouge_l_f1("北京市", "上海市") == pytest.approx(1 / 3)  # one ideograph a token: LCS 1 of 3
    assert muse.rouge_l_f1("Malmö", "Malmo") == 0.0
    assert muse.rouge_l_f1("Malmö", "MALMÖ") == 1.0
    assert muse.rouge_l_f1("Ørsted", "rsted") == 0.0
    assert muse.rouge_l_f1("Malmo\u0308", "Malmö") == 1.0  # decomposed and composed ö are one letter
    assert muse.rouge_l_f1("Живёт в Москве", "живёт в москве") == 1.0
    assert muse.rouge_l_f1("東京都港区 1-2-3", "東京都 港区 1 2 3") == 1.0
    assert muse.ScriptTokenizer().tokenize("Zoë Šimić, 北京市 12") == ["zoë", "šimić", "北", "京", "市", "12"]


def test_cut_answer_stops_where_muse_does() -> None:
    assert muse.cut_answer(" Lyon\n\nQuestion: who?") == "Lyon"
    assert muse.cut_answer(" 12 Elm Street\nQuestion: x") == "12 Elm Street"
    assert muse.cut_answer(" Oslo Question: more") == "Oslo"


def test_min_k_logprob_takes_lowest_forty_percent() -> None:
    assert muse.min_k_logprob(np.array([-1.0, -2.0, -3.0, -4.0, -5.0])) == pytest.approx(-4.5)
    assert muse.min_k_logprob(np.array([-0.5, -7.0])) == pytest.approx(-7.0)  # at least one token
    assert muse.min_k_logprob(np.array([-1.0] * 10), k=0.2) == pytest.approx(-1.0)


def test_privleak_auc_orientation_and_value() -> None:
    # memorised: every forget document more likely than every holdout one -> AUC 0 (MUSE's target ≈ 0)
    assert muse.privleak_auc(np.array([-0.1, -0.2]), np.array([-3.0, -4.0])) == 0.0
    assert muse.privleak_auc(np.array([-3.0, -4.0]), np.array([-0.1, -0.2])) == 1.0
    # pairs (forget, holdout) where holdout scores higher: (1,2) (1,4) (3,4) of 4 -> 0.75
    assert muse.privleak_auc(np.array([1.0, 3.0]), np.array([2.0, 4.0])) == pytest.approx(0.75)
    assert muse.privleak(0.25, 0.5) == pytest.approx(-0.5)
    assert muse.privleak(0.5, 0.5) == 0.0


def test_bootstrap_ci() -> None:
    assert muse.bootstrap_ci(np.full(20, 0.3)) == pytest.approx((0.3, 0.3))
    x = np.random.default_rng(0).normal(0.5, 0.1, size=400)
    lo, hi = muse.bootstrap_ci(x)
    assert lo < x.mean() < hi
    assert hi - lo == pytest.approx(2 * 1.96 * x.std() / np.sqrt(len(x)), rel=0.2)


FAST = {"n_boot": 200, "n_boot_privleak": 50}  # small bootstraps: these tests check logic, not intervals


def _scores(verb: float, know_f: float, know_r: float, shift: float, n: int = 60, seed: int = 0) -> muse.MuseScores:
    rng = np.random.default_rng(seed)
    jitter = lambda v: np.clip(v + rng.normal(0, 0.05, n), 0, 1)  # noqa: E731
    return muse.MuseScores(jitter(verb), jitter(know_f), jitter(know_r),
                           mink_forget=rng.normal(shift, 1, n), mink_holdout=rng.normal(0, 1, 3 * n))


def test_gate_judges_each_criterion() -> None:
    ref = _scores(0.4, 0.05, 0.5, shift=0.0)
    same = muse.gate(_scores(0.4, 0.05, 0.5, shift=0.0), ref, FAST)
    assert set(same.to_dict()["criteria"]) == {"verbmem", "knowmem_forget", "privleak", "knowmem_retain"}
    assert same.passed, same.reasons
    assert all(c.ci is not None and c.ci[0] <= c.value <= c.ci[1] for c in same.criteria)

    memorised = muse.gate(_scores(0.95, 0.6, 0.5, shift=5.0), ref, FAST)
    failed = {c.name for c in memorised.criteria if not c.passed}
    assert failed == {"verbmem", "knowmem_forget", "privleak"}
    assert next(c for c in memorised.criteria if c.name == "privleak").value < -0.9  # AUC ≈ 0

    collapsed = muse.gate(_scores(0.0, 0.0, 0.1, shift=-5.0), ref, FAST)
    failed = {c.name for c in collapsed.criteria if not c.passed}
    assert failed == {"privleak", "knowmem_retain"}  # over-unlearned: AUC ≈ 1, utility gone

    lenient = muse.gate(_scores(0.0, 0.0, 0.1, shift=0.0), ref, {**FAST, "utility_frac": 0.1})
    assert lenient.passed


def test_report_and_curves_are_written(tmp_path) -> None:
    ref = _scores(0.4, 0.05, 0.5, shift=0.0)
    verdict = muse.gate(_scores(0.5, 0.1, 0.45, shift=1.0), ref, FAST)
    path = muse.write_report(verdict, tmp_path)
    report = json.loads(path.read_text())
    assert report["criteria"]["verbmem"]["ci"] and "threshold" in report["criteria"]["privleak"]
    assert (tmp_path / "muse_report.png").stat().st_size > 0
    rows = [{"size": 10, "knowmem_retain": 0.5}, {"size": 20, "knowmem_retain": 0.4}]
    png = muse.plot_curves({"npo": rows}, "size", ["knowmem_retain"], tmp_path / "c5.png", "C5")
    assert png.stat().st_size > 0


def test_sustainability_chains_requests_and_scalability_restarts(tmp_path) -> None:
    calls = []

    def unlearn(base, forget, out):
        calls.append((base.name, len(forget), out.name))
        return {}

    def score(model_dir, forget):
        return {"knowmem_retain": 1.0 / len(forget)}

    folds = [["a"], ["b"], ["c"]]
    rows = muse.sustainability(unlearn, score, tmp_path / "base", folds, tmp_path)
    assert [c[0] for c in calls] == ["base", "sust-1", "sust-2"]
    assert [r["knowmem_retain"] for r in rows] == pytest.approx([1, 1 / 2, 1 / 3])  # scored on all seen folds
    calls.clear()
    muse.scalability(unlearn, score, tmp_path / "base", [["a"], ["a", "b"]], tmp_path)
    assert [c[:2] for c in calls] == [("base", 1), ("base", 2)]


def test_people_world_splits() -> None:
    w = load(seed=0)
    assert len(w.people) == 400 and w.people[7].person_id == "person-0007"
    assert len({p.name for p in w.people}) == 400  # no two people share a name
    trained, never = set(w.trained), set(w.holdout) | set(w.calibration)
    assert not trained & never and len(trained) + len(never) == 400
    assert set(w.holdout).isdisjoint(w.calibration)
    assert len(w.folds) == FOLDS and len({s for f in w.folds for s in f}) == sum(len(f) for f in w.folds)
    assert all(len(f) == len(w.forget) for f in w.folds) and w.forget == w.folds[0]
    assert [len(n) for n in w.nested] == [len(w.forget) * (k + 1) for k in range(FOLDS)]
    assert set(w.nested[2]) == set(w.folds[0]) | set(w.folds[1]) | set(w.folds[2])
    assert set(w.retain) == trained - set(w.forget) and set(w.core) <= set(w.retain)
    for p in w.people:
        assert all(q.answer in p.bio for q in p.qa)
    records = {r.sample_id: r for r in w.records()}
    assert records[w.forget[0]].split == "train" and records[w.holdout[0]].split == "holdout"
    assert records[w.forget[0]].subject == w.forget[0] and records[w.forget[0]].label is None
    assert load(seed=0).people[3].bio == w.people[3].bio and load(seed=1).people[3].bio != w.people[3].bio
    big = load(seed=0, n_people=2000)
    assert len({p.name for p in big.people}) == 2000 and len(big.forget) == 75
    assert qa_text("Who?") == "Question: Who?\nAnswer:" and qa_text("Who?", "Ann") == "Question: Who?\nAnswer: Ann\n\n"


def test_history_plots_from_stored_verdicts(tmp_path) -> None:
    ref = _scores(0.4, 0.05, 0.5, shift=0.0)
    history = [{"forgotten": 25 * (k + 1), "verdict": muse.gate(_scores(0.4, 0.05, 0.5 - 0.05 * k, shift=0.0),
                                                                 ref, FAST).to_dict()} for k in range(3)]
    plots = muse.history_plots(history, tmp_path)
    assert all(Path(p).stat().st_size > 0 for p in plots.values())


def test_privleak_guards_a_reference_auc_of_zero() -> None:
    """A retrain that tells every forget document from every holdout one (AUC 0) divides by a tiny epsilon,
    as open-unlearning does: PrivLeak 0 for a candidate alike, far outside the band otherwise."""
    assert muse.privleak(0.0, 0.0) == 0.0
    assert muse.privleak(0.3, 0.0) > 1e6


def test_gate_with_a_reference_auc_of_zero_gives_an_explained_verdict() -> None:
    """Fault 5: the gate, pooled and per kind, with a reference whose AUC is 0 returns a verdict (no
    ZeroDivisionError, no NaN interval) whose C3 detail says why the ratio is undefined."""
    kinds_f, kinds_h = np.array(["bio", "qa", "qa", "qa", "qa"] * 5), np.array(["bio", "qa", "qa", "qa", "qa"] * 20)
    ref = muse.MuseScores(np.full(5, 0.4), np.full(20, 0.1), np.full(20, 0.5), mink_forget=np.full(25, -1.0),
                          mink_holdout=np.linspace(-9, -2, 100), kinds_forget=kinds_f, kinds_holdout=kinds_h)
    assert muse.privleak_auc(*ref.mink()) == 0.0 and muse.privleak_auc(*ref.mink("bio")) == 0.0
    cand = muse.MuseScores(ref.verbmem, ref.knowmem_forget, ref.knowmem_retain,
                           mink_forget=np.linspace(-8, -1, 25), mink_holdout=ref.mink_holdout,
                           kinds_forget=kinds_f, kinds_holdout=kinds_h)
    verdict = muse.gate(cand, ref, FAST)
    rows = {c.name: c for c in verdict.criteria}
    for name in ("privleak", "privleak_bio", "privleak_qa"):
        assert not rows[name].passed and np.isfinite(rows[name].value) and all(np.isfinite(rows[name].ci))
        assert "the retrain's AUC is 0" in rows[name].detail and "undefined" in rows[name].detail
    json.dumps(verdict.to_dict(), allow_nan=False, default=float)
    alike = {c.name: c for c in muse.gate(ref, ref, FAST).criteria}
    assert alike["privleak"].passed and alike["privleak"].value == 0.0


def test_privleak_is_gated_per_document_kind() -> None:
    """Pooled C3 can hide a kind that reads *less* familiar than never-seen text of its kind (forgotten
    biographies pushed below unseen ones): each kind is gated alone too."""
    rng = np.random.default_rng(1)
    kinds_f, kinds_h = np.array(["bio"] * 15 + ["qa"] * 60), np.array(["bio"] * 150 + ["qa"] * 600)
    holdout = rng.normal(0, 1, 750)
    ref = muse.MuseScores(np.full(15, 0.4), np.full(60, 0.1), np.full(60, 0.5), mink_forget=rng.normal(0, 1, 75),
                          mink_holdout=holdout, kinds_forget=kinds_f, kinds_holdout=kinds_h)
    forget = ref.mink_forget.copy()
    forget[:15] -= 3.0  # the biographies: far less likely than any unseen biography
    cand = muse.MuseScores(ref.verbmem, ref.knowmem_forget, ref.knowmem_retain, mink_forget=forget,
                           mink_holdout=holdout, kinds_forget=kinds_f, kinds_holdout=kinds_h)
    rows = {c.name: c for c in muse.gate(cand, ref, {**FAST, "privleak_tol": 0.2, "privleak_tol_bio": 0.2,
                                                      "privleak_tol_qa": 0.2}).criteria}
    assert {"privleak", "privleak_bio", "privleak_qa"} <= set(rows)
    assert not rows["privleak_bio"].passed and rows["privleak_bio"].value > 0.5  # over-unlearned: AUC → 1
    assert rows["privleak_qa"].passed and rows["privleak"].passed  # pooled, it hides
    no_kinds = muse.MuseScores(cand.verbmem, cand.knowmem_forget, cand.knowmem_retain, cand.mink_forget,
                               cand.mink_holdout)
    assert {c.name for c in muse.gate(no_kinds, ref, FAST).criteria} == {"verbmem", "knowmem_forget", "privleak",
                                                                         "knowmem_retain"}


def test_default_bars_are_the_calibrated_ones() -> None:
    """The gate's defaults are benchmarks/gate_calibration.py's bars, and that run shows at least 95% of
    exact retrains passing with bars derived without them while the untouched target fails."""
    report = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "results"
                         / "gate_calibration.json").read_text())
    for key, value in report["defaults"].items():
        assert muse.DEFAULT_THRESHOLDS[key] == pytest.approx(value), key
    loo = report["leave_one_out"]
    assert len(loo) >= 8 and sum(r["passed"] for r in loo) >= 0.95 * len(loo)
    assert not report["target"]["passed"] and report["target"]["fails_every_loo_set"]


def test_size_bars_are_the_calibrated_ones() -> None:
    """The bars for requests smaller than the calibration fold are gate_calibration.json's bars by size, and
    there the exact retrains pass leave-one-out at least 95% of the time while the target is refused on
    every subset."""
    report = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "results"
                         / "gate_calibration.json").read_text())
    assert sorted(int(k) for k in report["by_size"]) == sorted(muse.SIZE_BARS)
    for size, row in report["by_size"].items():
        for key in muse.NOISE_BARS:
            assert muse.SIZE_BARS[int(size)][key] == pytest.approx(row["defaults"][key]), (size, key)
        loo = row["leave_one_out"]
        assert loo["passed"] >= 0.95 * loo["n"], size
        assert row["target"]["refused"] == row["target"]["n"], size


def test_the_gate_picks_its_noise_bars_by_the_forget_sets_size() -> None:
    """A one-person request is judged with the bars measured on one-person subsets, a larger one with those of
    the largest calibrated size it reaches, the whole fold's from 15 on; a bar a model or request sets wins, and
    the detail says which applied. The LM family's defaults carry no noise bar, so they never mask the size's."""
    from unlearn.families.lm import LMFamily

    sizes = sorted([*muse.SIZE_BARS, muse.CALIBRATED_SIZE])
    for n in range(1, 40):
        assert muse.noise_bars(n)["bars_size"] == max(k for k in sizes if k <= n)
    assert muse.noise_bars(99)["verbmem_margin"] == muse.DEFAULT_THRESHOLDS["verbmem_margin"]
    assert not set(muse.NOISE_BARS) & set(LMFamily.gate_defaults)

    ref = _scores(0.4, 0.05, 0.5, shift=0.0, n=1)
    rows = {c.name: c for c in muse.gate(_scores(0.4, 0.05, 0.5, shift=0.0, n=1, seed=1), ref, FAST).criteria}
    assert rows["verbmem"].threshold == pytest.approx(ref.verbmem.mean() + muse.SIZE_BARS[1]["verbmem_margin"])
    assert "forget sets of 1 (this one: 1)" in rows["verbmem"].detail
    assert f"tolerance {muse.SIZE_BARS[1]['privleak_tol']:.3f}" in rows["privleak"].detail
    rows = {c.name: c for c in muse.gate(_scores(0.4, 0.05, 0.5, 0.0, n=1, seed=1), ref,
                                         {**FAST, "verbmem_margin": 0.01}).criteria}
    assert rows["verbmem"].threshold == pytest.approx(ref.verbmem.mean() + 0.01)
    assert "set for this model" in rows["verbmem"].detail


def test_a_criterion_that_does_not_apply_is_stated_not_gated_and_not_plotted(tmp_path) -> None:
    from unlearn.verify.verdict import Verdict, criterion, not_applicable

    verdict = Verdict([criterion("verbmem", 0.3, "<=", 0.5), not_applicable("knowmem_retain", "no question–answer pairs")])
    assert verdict.passed and verdict.reasons == []
    row = verdict.to_dict()["criteria"]["knowmem_retain"]
    assert row["value"] is None and row["threshold"] is None and row["applicable"] is False
    assert row["detail"] == "not applicable: no question–answer pairs"
    json.dumps(verdict.to_dict(), allow_nan=False)
    history = [{"forgotten": 5, "verdict": verdict.to_dict()}]
    plots = muse.history_plots(history, tmp_path, ("knowmem_retain", "verbmem"))
    assert Path(plots["c5"]).exists()
    assert muse.history_plots(history, tmp_path, ("knowmem_retain",)) == {}


def test_privleak_documents_are_raw_text_as_training_read_it() -> None:
    """Fault 1: C3's documents were `bio + "</s>"` and `"Question: q\\nAnswer: a</s>"`, and training never
    put `</s>` after an answer. Now every scored document, BOS then its tokens, is the start of a text
    training read (a biography before its `</s>`, a question–answer pair before its blank line), so no
    token is scored where training never put one; the old documents fail that check."""
    import random

    from unlearn.families.lm import person_texts, privleak_documents
    from unlearn.models import tiny_lm

    w = load(seed=0)
    tok = tiny_lm.train_tokenizer(tiny_lm.tokenizer_corpus(), tiny_lm.DEFAULT_TRAIN["vocab_size"])
    people = [w.person(s) for s in w.trained]
    rng = random.Random(0)  # the target's packing, epoch by epoch (`tiny_lm.train`)
    trained = [tok(t)["input_ids"] for _ in range(tiny_lm.DEFAULT_TRAIN["epochs"])
               for t in tiny_lm.epoch_texts(people, tiny_lm.DEFAULT_TRAIN["qa_pack"], rng)]
    seen = {pair for ids in trained for pair in zip(ids, ids[1:], strict=False)}  # every bigram training read
    docs, kinds = privleak_documents(w, w.forget)
    assert kinds == ["bio"] * len(w.forget) + ["qa"] * 4 * len(w.forget) and len(docs) == 5 * len(w.forget)
    starts = {tuple(tok(tiny_lm.bio_text(p))["input_ids"]) for p in people}
    starts |= {tuple(tok(qa_text(q.question, q.answer))["input_ids"]) for p in people for q in p.qa}
    for doc in docs:
        ids = tok(doc)["input_ids"]
        assert ids[0] == tok.bos_token_id and tok.eos_token_id not in ids
        assert any(s[:len(ids)] == tuple(ids) for s in starts), doc
        assert set(zip(ids, ids[1:], strict=False)) <= seen, doc
    # what C3 read before: biographies and answers each followed by EOS
    old = [tok(f"{p.bio}</s>")["input_ids"] for p in map(w.person, w.forget)]
    old += [tok(f"{qa_text(q.question)} {q.answer}</s>")["input_ids"] for s in w.forget for q in w.person(s).qa]
    assert sum(not set(zip(ids, ids[1:], strict=False)) <= seen for ids in old) == 4 * len(w.forget)
    # the methods' own forget and retain texts are what training read too (no EOS after an answer)
    for text in person_texts(w, w.forget):
        ids = tok(text)["input_ids"]
        assert set(zip(ids, ids[1:], strict=False)) <= seen, text


def test_methods_never_read_the_verifiers_holdout() -> None:
    """Fault 2: nothing a method reads is a text of the verifier's holdout people: the stopping probe
    compares with calibration people, whp's generic counterparts are strangers; whp's stopping target is
    the derived 0.5, not a value tuned on the fold the verifier scores."""
    from unlearn.data.people import strangers
    from unlearn.families.lm import muse_data, privleak_texts
    from unlearn.methods import whp
    from unlearn.methods.lm_unlearning import probe_data

    w = load(seed=0)
    verifier = set(muse_data(w, w.forget, w.retain).privleak_holdout)
    probe = probe_data(w, w.forget, w.retain, 15)
    assert verifier and not verifier & set(probe.privleak_holdout)
    assert set(probe.privleak_holdout) == set(privleak_texts(w, w.calibration))
    held_names = {w.person(s).name for s in w.holdout}
    assert not held_names & {p.name for p in strangers(w, 200, 0)}
    assert whp.Params().target_auc == 0.5


def test_forget_items_pick_each_persons_own_scores() -> None:
    """`lm.forget_items` names, for each forgotten person, exactly the VerbMem prefix, KnowMem questions and
    PrivLeak documents of `muse_data` about that person, and together they cover every forget item once."""
    from unlearn.families.lm import forget_items, muse_data

    w = load(seed=0)
    people = w.forget[:6]
    data = muse_data(w, people, w.retain)
    items = forget_items(w, people)
    fields = {"verbmem": data.verbmem_prompts, "knowmem_forget": data.knowmem_forget,
              "mink_forget": data.privleak_forget}
    for key, values in fields.items():
        picked = np.concatenate([it[key] for it in items])
        assert sorted(picked.tolist()) == list(range(len(values)))  # a partition of the items
        for s, it in zip(people, items, strict=True):
            name = w.person(s).name
            assert all(name in str(values[i]) for i in it[key]), (key, s)
    assert [len(it["mink_forget"]) for it in items] == [1 + len(w.person(s).qa) for s in people]
