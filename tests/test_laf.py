"""LAF (Label-Agnostic Forgetting) at library level, on the digits CNN from the zoo."""

from __future__ import annotations

import numpy as np
import pytest

from unlearn.families import Scope, get_family
from unlearn.families.classifier import dataset_of
from unlearn.methods import MethodError, UnlearnTask, get_method
from unlearn.verification import gates_for
from unlearn.zoo import ensure


def _unlearn(model, tmp_path, forget, scope, **params):
    data = dataset_of(model)
    fs = set(forget)
    keep = [s for s in data.ids_in("train") if s not in fs]
    fam = get_family("classifier")
    fam.retrain(model, keep, tmp_path / "ref")
    facts = get_method("laf").run(UnlearnTask("classifier", model, tmp_path / "laf", forget, keep, scope,
                                              params=params))
    verdict = fam.verify(tmp_path / "laf", tmp_path / "ref", forget, keep, scope,
                         thresholds=gates_for("classifier", "laf", scope))  # LAF's own gates, as the service applies
    return facts, {c.name: c for c in verdict.criteria}


def test_laf_class_removal_meets_its_gates(zoo_dir, tmp_path):
    model = ensure("digits-cnn", zoo_dir)
    data = dataset_of(model)
    forget = [s for s in data.ids_in("train") if data.y[data.index[s]] == 0]
    facts, rows = _unlearn(model, tmp_path, forget, Scope(type="class", label=0, labels_known=False))
    assert facts["tau"] == 20.0 and facts["steps"] == facts["epochs"] * -(-len(forget) // 32)
    assert rows["forget_acc"].passed and rows["forget_acc"].value <= 0.05  # retrain's is 0
    # LAF's own gate: remaining-class test accuracy within 2 points of retrain (default is 3)
    assert rows["test_acc"].threshold == pytest.approx(rows["test_acc"].reference - 0.02)
    assert rows["test_acc"].passed


@pytest.mark.parametrize("draw", [0, 1])
def test_laf_data_removal_meets_its_gates(zoo_dir, tmp_path, draw):
    # Two forget draws: with a fixed 40 epochs draw 0 passed and draw 1 forgot 10 points too much.
    model = ensure("digits-cnn", zoo_dir)
    data = dataset_of(model)
    rng = np.random.default_rng(draw)  # LAF's data-removal task: 40% of each of classes 5–9
    forget = [s for s in data.ids_in("train") if data.y[data.index[s]] >= 5 and rng.random() < 0.4]
    facts, rows = _unlearn(model, tmp_path, forget, Scope(type="samples", labels_known=False))
    assert facts["tau"] == 5.0 and facts["steps"] <= facts["epochs"] * -(-len(forget) // 32)
    assert rows["forget_acc_gap"].threshold == 0.03 and rows["forget_acc_gap"].passed, rows["forget_acc_gap"]
    assert rows["test_acc"].passed and rows["retain_acc"].passed


class _NoLabels(np.ndarray):
    def __getitem__(self, key):
        raise AssertionError("LAF read a label")


def test_laf_reads_no_labels(zoo_dir, tmp_path, monkeypatch):
    model = ensure("digits-cnn", zoo_dir)
    data = dataset_of(model)
    train = data.ids_in("train")
    data.y = np.zeros(0, dtype=np.int64).view(_NoLabels)
    monkeypatch.setattr("unlearn.methods.laf.dataset_of", lambda _: data)
    facts = get_method("laf").run(UnlearnTask("classifier", model, tmp_path / "out", train[:40], train[40:],
                                              Scope(labels_known=False), params={"epochs": 1, "vae_epochs": 1}))
    assert facts["steps"] == 2 and (tmp_path / "out" / "unlearn.json").exists()


def test_laf_refuses_a_network_without_an_extractor(zoo_dir, tmp_path):
    model = ensure("digits-mlp", zoo_dir)
    train = dataset_of(model).ids_in("train")
    with pytest.raises(MethodError, match="extractor"):
        get_method("laf").run(UnlearnTask("classifier", model, tmp_path / "out", train[:5], train[5:]))


def test_auto_picks_laf_for_unlabelled_requests(zoo_dir):
    model = ensure("digits-cnn", zoo_dir)
    assert get_family("classifier").auto_method(model, Scope(labels_known=False)) == "laf"
    assert get_method("laf").needs_labels is False
