"""A team's own causal LM and support tickets: the folder loads and is checked before registration, its
recipe is required where the retrain needs it, a customer's tickets are forgotten and verified from the
records (the holdout gate against the original; MUSE's KnowMem is not applicable without questions)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from examples.byo.support_lm import build_support_lm, paths_in, stage, subject_ids
from tests.conftest import cached_build
from unlearn.artifacts import read_meta, write_meta
from unlearn.contracts import Scope
from unlearn.data import records
from unlearn.families import get_family, lm_records
from unlearn.methods import MethodError, UnlearnTask, get_method


@pytest.fixture(scope="module")
def built(zoo_dir) -> dict[str, Path]:
    """The stand-in's files (built once, cached beside the zoo)."""
    return paths_in(cached_build(zoo_dir, "byo-support-lm", build_support_lm, "support-lm/config.json"))


@pytest.fixture(scope="module")
def team(built, tmp_path_factory):
    """The stand-in staged as registration stages it (policy "holdout"), with its records folder."""
    root = tmp_path_factory.mktemp("team")
    return {**stage(built, root / "v1", root / "records"), "built": built, "records_dir": root / "records"}


def restage(team, dest: Path, policy: str) -> Path:
    """Another staged copy of the model, under `policy`, on the same records."""
    shutil.copytree(team["model"], dest)
    meta = {k: v for k, v in read_meta(dest).items() if k not in ("reference", "train", "seed")}
    fam = get_family("lm")
    write_meta(dest, {**meta, "reference": {"policy": policy},
                      **fam.byo_meta(dest, team["records"], {"recipe": team["recipe"], "reference": policy})})
    return dest


def customer(team, customer_id: str) -> tuple[list[str], list[str]]:
    """(forget, retain): a customer's tickets and every other train record."""
    forget = subject_ids(team["rows"], customer_id)
    return forget, [s for s in team["records"].ids_in("train") if s not in forget]


def test_the_folder_loads_and_one_record_runs_forward(team):
    fam = get_family("lm")
    fam.check_forward(team["built"]["model"], team["records"])  # the folder as the team saved it
    assert (team["built"]["model"] / "model.safetensors").exists()
    assert (team["built"]["model"] / "tokenizer.json").exists()
    rec = team["records"]
    assert len(rec.ids_in("train")) == 200 and len(rec.ids_in("holdout")) == 50
    verification, calibration = lm_records.holdout_halves(rec)
    assert set(verification).isdisjoint(calibration) and len(verification) + len(calibration) == 50
    assert len(verification) == len(calibration) == 25  # five holdout customers each, whole customers


def test_weights_that_do_not_match_their_config_are_refused(team, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(team["model"], bad)
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "n_embd": 64}))
    with pytest.raises(ValueError, match="weights do not match its config.json .mismatched keys"):
        get_family("lm").check_forward(bad, team["records"])
    (bad / "config.json").write_text(json.dumps(config))
    (bad / "tokenizer.json").unlink()
    (bad / "tokenizer_config.json").unlink()
    with pytest.raises(ValueError, match="no tokenizer"):
        get_family("lm").check_forward(bad, team["records"])


def test_registration_keys_need_the_recipe_and_holdout_texts(team):
    fam, rec = get_family("lm"), team["records"]
    meta = fam.byo_meta(team["model"], rec, {"recipe": team["recipe"], "reference": "retrain"})
    assert meta["train"]["base"] == team["recipe"]["base"] and meta["train"]["epochs"] == team["recipe"]["epochs"]
    partial = {k: v for k, v in team["recipe"].items() if k not in ("lr", "max_length")}
    with pytest.raises(ValueError, match="lr, max_length"):
        fam.byo_meta(team["model"], rec, {"recipe": partial, "reference": "retrain"})
    with pytest.raises(ValueError, match="needs lr, epochs"):
        fam.byo_meta(team["model"], rec, {"recipe": None, "reference": "retrain"})
    assert fam.byo_meta(team["model"], rec, {"recipe": None, "reference": "holdout"}) == {}


def test_the_holdout_policy_needs_holdout_records(team, tmp_path):
    rows = [r for r in team["rows"] if r["split"] == "train"]
    records.save(rows, tmp_path / "train-only")
    with pytest.raises(ValueError, match="the holdout policy needs holdout records"):
        get_family("lm").byo_meta(team["model"], records.load(str(tmp_path / "train-only")),
                                  {"recipe": None, "reference": "holdout"})


def test_records_without_texts_are_refused(team, tmp_path):
    rows = [{**r, "text": None, "label": 0} for r in team["rows"]]
    records.save(rows, tmp_path / "labels")
    with pytest.raises(ValueError, match="text field"):
        get_family("lm").check_forward(team["model"], records.load(str(tmp_path / "labels")))


def test_auto_picks_npo_klr_and_whp_refuses_a_records_model(team, tmp_path):
    model = team["model"]
    fam = get_family("lm")
    assert fam.auto_method(model, Scope(type="subject")) == "npo_klr"
    assert len(fam.samples(model)) == 250
    forget, retain = customer(team, "cust-0003")
    with pytest.raises(MethodError, match="entity spans"):
        get_method("whp").run(UnlearnTask("lm", model, tmp_path / "cand", forget, retain))


def by_name(verdict) -> dict:
    return {c.name: c for c in verdict.criteria}


@pytest.mark.slow
def test_a_customers_tickets_doing_nothing_fails_the_retrain_passes_npo_is_verified(team, tmp_path):
    """Under the holdout policy: the original, unchanged, still recites the customer's tickets and tells
    them from never-seen ones, so it fails; the recipe's retrain without them passes; npo_klr's candidate
    gets a full verdict. C2 and C4 are stated as not applicable (no question–answer fields). The retrain
    passing is a draw for this customer (chosen before any run): over four customers the holdout gate passes
    3 of 4 exact retrains (benchmarks/results/byo_lm.md); doing nothing fails all four."""
    fam = get_family("lm")
    model = team["model"]
    forget, retain = customer(team, "cust-0003")
    assert len(forget) == 5
    scope = Scope(type="subject")

    nothing = fam.verify(model, None, forget, retain, scope)
    crit = by_name(nothing)
    assert not nothing.passed
    assert not crit["holdout_verbmem"].passed and not crit["holdout_mia_auc"].passed
    for name in ("knowmem_forget", "knowmem_retain"):
        assert not crit[name].applicable and crit[name].threshold is None and "not applicable" in crit[name].detail
    assert set(crit) <= set(fam.criteria)
    json.dumps(nothing.to_dict(), allow_nan=False)  # what the API returns: no NaN for "not applicable"

    get_method("retrain").run(UnlearnTask("lm", model, tmp_path / "retrain", forget, retain))
    assert read_meta(tmp_path / "retrain")["original_dir"] == str(model)  # the holdout gate's original
    retrained = fam.verify(tmp_path / "retrain", None, forget, retain, scope)
    assert retrained.passed, retrained.reasons
    assert by_name(retrained)["holdout_verbmem"].value < crit["holdout_verbmem"].value

    facts = get_method("npo_klr").run(UnlearnTask("lm", model, tmp_path / "npo", forget, retain,
                                                  params={"min_steps": 10, "max_epochs": 10}))
    assert facts["steps_run"] > 0 and read_meta(tmp_path / "npo")["original_dir"] == str(model)
    candidate = fam.verify(tmp_path / "npo", None, forget, retain, scope)
    assert {"holdout_mia_auc", "holdout_verbmem", "holdout_likelihood"} <= set(by_name(candidate))


@pytest.mark.slow
def test_under_the_retrain_policy_c3_is_relative_to_the_reference(team, tmp_path):
    """The same customer under the "retrain" policy: the retrain against itself passes every gate (PrivLeak
    0), the original fails PrivLeak and VerbMem against it."""
    fam = get_family("lm")
    model = restage(team, tmp_path / "v1", policy="retrain")
    forget, retain = customer(team, "cust-0003")
    fam.retrain(model, retain, tmp_path / "ref")
    scope = Scope(type="subject")
    same = fam.verify(tmp_path / "ref", tmp_path / "ref", forget, retain, scope)
    assert same.passed, same.reasons
    assert by_name(same)["privleak"].value == 0.0 and not by_name(same)["knowmem_forget"].applicable
    # the noise bars were measured on the people world's LM, and each gated criterion says so
    assert "the people world's LM, not this model" in by_name(same)["verbmem"].detail
    nothing = fam.verify(model, tmp_path / "ref", forget, retain, scope)
    assert not by_name(nothing)["privleak"].passed and not by_name(nothing)["verbmem"].passed


def test_a_retrain_recipe_is_deterministic_given_its_seed(team, tmp_path):
    """The recipe on a few kept records, twice: the same weights; without a base, from the model's config."""
    import torch
    from safetensors.torch import load_file

    model = restage(team, tmp_path / "v1", policy="retrain")
    meta = read_meta(model)
    write_meta(model, {**meta, "train": {**meta["train"], "epochs": 1}})
    keep = team["records"].ids_in("train")[:8]
    for out in ("a", "b"):
        get_family("lm").retrain(model, keep, tmp_path / out)
    a, b = (load_file(tmp_path / out / "model.safetensors") for out in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_meta(tmp_path / "a")["retrained_on"] == 8
    # without a base the recipe trains the model's own config from scratch: other weights, same shapes
    write_meta(model, {**meta, "train": {k: v for k, v in meta["train"].items() if k != "base"} | {"epochs": 1}})
    get_family("lm").retrain(model, keep, tmp_path / "scratch")
    c = load_file(tmp_path / "scratch" / "model.safetensors")
    assert c.keys() == a.keys() and all(c[k].shape == a[k].shape for k in a)
    assert not torch.equal(c["transformer.wte.weight"], a["transformer.wte.weight"])


def test_question_answer_fields_make_c2_and_c4_apply(team, tmp_path):
    """Records that carry question–answer pairs get KnowMem on forget and on retain, gated against the
    original's on holdout pairs (here made-up questions about each ticket: the machinery, not a score)."""
    rows = [{**r, "question": f"Which order is ticket {r['sample_id']} about?", "answer": r["text"].split()[3]}
            for r in team["rows"]]
    records.save(rows, tmp_path / "qa")
    model = tmp_path / "v1"
    shutil.copytree(team["model"], model)
    write_meta(model, {**read_meta(model), "dataset": {"name": "records", "path": str(tmp_path / "qa")}})
    forget, retain = customer(team, "cust-0003")
    crit = by_name(get_family("lm").verify(model, None, forget, retain[:20], Scope(type="subject")))
    for name in ("knowmem_forget", "knowmem_retain"):
        assert crit[name].applicable and crit[name].threshold is not None and crit[name].reference is not None
    assert get_family("lm").summary(model)["arch"] == "gpt2"
