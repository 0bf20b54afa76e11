"""A team's Hugging Face image classifier: loaded as it was saved, checked before registration, retrained
by its recipe, verified against its holdout records, and converted to an analytic head that ACU serves."""

import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from examples.byo.digits_vit import build_digits_vit
from tests.conftest import cached_build
from unlearn.artifacts import read_meta, write_meta
from unlearn.contracts import Scope
from unlearn.data import records
from unlearn.families import get_family
from unlearn.families.classifier import accuracy_on, dataset_of, original_of
from unlearn.methods import MethodError, UnlearnTask, get_method
from unlearn.models import analytic, hf_image, mlp

FIELDS = records.FieldMap(id="sample_id", subject="owner", label="label", image="image", split="split")


@pytest.fixture(scope="module")
def team(zoo_dir, tmp_path_factory):
    """The stand-in ViT, its recipe and its records folder (built once, cached beside the zoo)."""
    folder = cached_build(zoo_dir, "byo-digits-vit", build_digits_vit, "digits-vit/config.json")
    rows, shape = records.normalise(records.read_table(folder / "digits-vit-manifest.parquet"), FIELDS, salt="test")
    out = tmp_path_factory.mktemp("records")
    records.save(rows, out, image_shape=shape)
    return {"model": folder / "digits-vit", "recipe": json.loads((folder / "digits-vit-recipe.json").read_text()),
            "records": records.load(str(out)), "records_dir": out}


def register(team, dest: Path, *, policy: str = "retrain", analytic_head: bool = False, recipe=True) -> Path:
    """What registration does with the family's hooks: stage a copy, prepare, write unlearn.json, check."""
    fam = get_family("classifier")
    shutil.copytree(team["model"], dest)
    options = {"recipe": team["recipe"] if recipe else None, "reference": policy, "analytic_head": analytic_head}
    fam.prepare(dest, team["records"], options)
    meta = {"family": "classifier", "model": "digits-vit", "dataset": {"name": "records", "path": str(team["records_dir"])},
            "reference": {"policy": policy}, **fam.byo_meta(dest, team["records"], options)}
    write_meta(dest, meta)
    fam.check_forward(dest, team["records"])
    return dest


@pytest.fixture(scope="module")
def registered(team, tmp_path_factory):
    return register(team, tmp_path_factory.mktemp("v") / "v1", policy="holdout")


@pytest.fixture(scope="module")
def forget_set(team):
    """About 100 training records: every training record of the first customers, customer by customer."""
    rec = team["records"]
    by_subject = defaultdict(list)
    for sid, subj, split in zip(rec.ids, rec.column("subject_hash"), rec.split, strict=True):
        if split == "train":
            by_subject[subj].append(sid)
    ids: list[str] = []
    for subj in sorted(by_subject):
        if len(ids) >= 100:
            break
        ids += by_subject[subj]
    keep = [s for s in rec.ids_in("train") if s not in set(ids)]
    return {"forget": ids, "keep": keep, "subject": by_subject[sorted(by_subject)[0]]}


def test_the_team_folder_loads_and_one_record_runs(team, registered):
    assert hf_image.is_hf_image_folder(team["model"])
    assert not (team["model"] / "unlearn.json").exists()
    get_family("classifier").check_forward(team["model"], team["records"])
    meta = read_meta(registered)
    assert meta["arch"] == "hf-image" and meta["num_classes"] == 10 and meta["image_shape"] == [1, 8, 8]
    assert meta["hf_config"]["model_type"] == "vit" and meta["recipe"] == team["recipe"]
    data = dataset_of(registered)
    logp = hf_image.load(registered)(data.X[:5])
    assert logp.shape == (5, 10) and logp.dtype == np.float64 and np.allclose(np.exp(logp).sum(1), 1)
    # it fits its (noisy) training labels better than records it never saw: the memorisation the gate sees
    assert accuracy_on(registered, data.ids_in("train")) > accuracy_on(registered, data.ids_in("holdout")) + 0.05


@pytest.mark.parametrize("change, message", [
    ({"hidden_size": 32}, "do not load into its config"),  # every weight mis-shaped
    ({"num_hidden_layers": 3}, "missing keys"),  # a layer the weights lack
])
def test_weights_that_do_not_match_the_config_are_refused_with_the_reason(team, tmp_path, change, message):
    folder = tmp_path / "m"
    shutil.copytree(team["model"], folder)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, **change}))
    with pytest.raises(ValueError, match=message):
        get_family("classifier").check_forward(folder, team["records"])


def _records(tmp_path, team, **change) -> records.Records:
    rows, shape = records.normalise(records.read_table(team["model"].parent / "digits-vit-manifest.parquet").select(
        range(20)), FIELDS, salt="test")
    if "label" in change:
        rows[3]["label"] = change["label"]
    if "side" in change:
        shape = (1, change["side"], change["side"])
        for r in rows:
            r["pixels"] = [0.5] * (change["side"] ** 2)
    records.save(rows, tmp_path / "r", image_shape=shape)
    return records.load(str(tmp_path / "r"))


@pytest.mark.parametrize("change, message", [
    ({"label": 12}, "label 12 is beyond the model's 10 classes"),
    ({"side": 16}, r"shape \(1, 16, 16\), the model's config takes \(1, 8, 8\)"),
])
def test_records_the_model_cannot_serve_are_refused(team, tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        get_family("classifier").check_forward(team["model"], _records(tmp_path, team, **change))


def test_the_retrain_policy_needs_the_recipe_keys(team):
    fam = get_family("classifier")
    with pytest.raises(ValueError, match="epochs, batch_size, seed"):
        fam.byo_meta(team["model"], team["records"], {"recipe": {"lr": 1e-3}, "reference": "retrain"})
    with pytest.raises(ValueError, match="lr, epochs, batch_size, seed"):
        fam.byo_meta(team["model"], team["records"], {"recipe": None, "reference": "retrain"})
    meta = fam.byo_meta(team["model"], team["records"], {"recipe": None, "reference": "holdout"})
    assert "recipe" not in meta and "holdout" in fam.reference_policies


def test_methods_pick_and_refuse_by_architecture(registered, forget_set, tmp_path):
    fam = get_family("classifier")
    assert fam.auto_method(registered, Scope(type="subject")) == "retrain"
    assert fam.auto_method(registered, Scope(type="samples", labels_known=False)) == "retrain"
    assert fam.auto_method(registered, Scope(kind="corrective")) == "retrain"
    task = UnlearnTask(family="classifier", base_dir=registered, out_dir=tmp_path / "laf",
                       forget_ids=forget_set["forget"][:5], retain_ids=forget_set["keep"][:50])
    with pytest.raises(MethodError, match="extractor and head"):
        get_method("laf").run(task)
    # SSD dampens any torch network's parameters: the wrapped model is one, and is saved as it was loaded
    get_method("ssd").run(UnlearnTask(family="classifier", base_dir=registered, out_dir=tmp_path / "ssd",
                                      forget_ids=forget_set["forget"][:5], retain_ids=forget_set["keep"][:20]))
    assert read_meta(tmp_path / "ssd")["method"] == "ssd" and hf_image.is_hf_image_folder(tmp_path / "ssd")
    assert hf_image.load(tmp_path / "ssd")(dataset_of(registered).X[:3]).shape == (3, 10)


@pytest.fixture(scope="module")
def retrained(registered, forget_set, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("retrain") / "v2"
    get_family("classifier").retrain(registered, forget_set["keep"], out)
    return out


@pytest.mark.slow
def test_the_recipe_retrains_a_model_that_fits(registered, retrained, forget_set):
    meta = read_meta(retrained)
    assert meta["arch"] == "hf-image" and meta["parent_dir"] == str(registered)
    assert original_of(retrained) == registered
    assert accuracy_on(retrained, forget_set["keep"]) > 0.85  # fits its (noisy) training labels
    assert accuracy_on(retrained, dataset_of(retrained).ids_in("holdout")) > 0.7


@pytest.mark.slow
def test_the_holdout_gate_fails_the_unchanged_model_and_passes_the_retrain(registered, retrained, forget_set):
    fam = get_family("classifier")
    scope = Scope(type="subject")
    unchanged = fam.verify(registered, None, forget_set["forget"], forget_set["keep"], scope)
    failed = {c.name for c in unchanged.criteria if not c.passed}
    assert not unchanged.passed and "holdout_forget_acc" in failed, unchanged.to_dict()
    verdict = fam.verify(retrained, None, forget_set["forget"], forget_set["keep"], scope)
    assert verdict.passed, verdict.to_dict()
    assert {c.name for c in verdict.criteria} == {"holdout_mia_auc", "holdout_forget_acc", "holdout_acc"}
    assert verdict.info["original_dir"] == str(registered)
    # under the retrain policy the same candidate goes through the family's reference comparison
    against = fam.verify(retrained, retrained, forget_set["forget"], forget_set["keep"], scope)
    assert against.passed and {"forget_acc", "test_acc", "retain_acc"} <= {c.name for c in against.criteria}


def _team_mlp(team, folder: Path) -> Path:
    """A classifier of this project's own (an `mlp` artifact) trained on the team's records."""
    data = records.load_tabular(str(team["records_dir"]))
    meta = {"family": "classifier", "model": "team-mlp", "arch": "mlp", "seed": 0, "in_features": 64, "hidden": 64,
            "num_classes": 10, "train": {"epochs": 5}, "dataset": {"name": "records", "path": str(team["records_dir"])}}
    train = data.rows(data.ids_in("train"))
    mlp.train(meta, data.X[train], data.y[train], folder)
    return folder


@pytest.mark.parametrize("arch, features", [pytest.param("hf-image", 64, marks=pytest.mark.slow), ("mlp", 64)])
def test_an_analytic_head_forgets_a_customer_exactly(team, forget_set, tmp_path, arch, features):
    torch.set_num_threads(1)
    source = {**team, "model": _team_mlp(team, tmp_path / "mlp")} if arch == "mlp" else team
    v1 = register(source, tmp_path / "v1", policy="retrain", analytic_head=True, recipe=False)
    meta = read_meta(v1)
    assert meta["arch"] == "analytic" and meta["backbone"] == arch and meta["in_features"] == features
    assert (v1 / analytic.BACKBONE).is_dir() and "parent_dir" not in meta and meta["model"] == "digits-vit"
    fam = get_family("classifier")
    assert fam.auto_method(v1, Scope(type="subject")) == "acu"
    train = team["records"].ids_in("train")
    assert accuracy_on(v1, train) > 0.8
    forget = forget_set["subject"]
    keep = [s for s in train if s not in set(forget)]
    get_method("acu").run(UnlearnTask(family="classifier", base_dir=v1, out_dir=tmp_path / "acu",
                                      forget_ids=forget, retain_ids=keep))
    fam.retrain(v1, keep, tmp_path / "fresh")  # the closed-form fit on the kept records, same backbone
    (acu, _), (fresh, _) = analytic.load_classifier(tmp_path / "acu"), analytic.load_classifier(tmp_path / "fresh")
    rel = float(torch.linalg.norm(acu.weight - fresh.weight) / torch.linalg.norm(fresh.weight))
    assert rel < 1e-8, rel
    X = dataset_of(v1).X
    assert np.abs(analytic.load(tmp_path / "acu")(X) - analytic.load(tmp_path / "fresh")(X)).max() < 1e-8
    assert original_of(tmp_path / "acu") == v1
    with pytest.raises(MethodError, match="already forgotten"):  # the ledger travels with the version
        get_method("acu").run(UnlearnTask(family="classifier", base_dir=tmp_path / "acu", out_dir=tmp_path / "again",
                                          forget_ids=forget, retain_ids=keep))

def test_training_is_deterministic_given_the_seed_and_starts_from_a_base(team, registered, tmp_path):
    data = dataset_of(registered)
    X, y = data.X[:64], data.y[:64]
    meta = {**read_meta(registered), "recipe": {**team["recipe"], "epochs": 1}}
    for name in ("a", "b"):
        hf_image.train(meta, X, y, tmp_path / name)
    a, b = (hf_image.load_hf(tmp_path / n).state_dict() for n in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a base checkpoint with another head: the backbone is the base's, the 5-class head is new
    five = {**meta, "num_classes": 5, "recipe": {**meta["recipe"], "base": str(team["model"])}}
    hf_image.train(five, X, y % 5, tmp_path / "five")
    assert hf_image.load(tmp_path / "five")(X[:2]).shape == (2, 5)
