"""Each classifier method against its two stand-ins: "return the input unchanged" and "retrain from scratch".
A stand-in that replaced the method would fail at least one assertion here (the U-LiRA gate's own
power against the unchanged original is in tests/test_ulira.py; SSD's are in tests/test_ssd.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from unlearn.artifacts import load_tensors
from unlearn.data import _READERS
from unlearn.families import Scope, get_family
from unlearn.families.classifier import dataset_of
from unlearn.methods import UnlearnTask, get_method
from unlearn.zoo import ensure


def _split(model, n, seed=0):
    train = dataset_of(model).ids_in("train")
    forget = sorted(np.random.default_rng(seed).choice(train, n, replace=False).tolist())
    gone = set(forget)
    return forget, [s for s in train if s not in gone]


class _Forbidden(np.ndarray):
    def __getitem__(self, key):
        raise AssertionError("read outside what the method may read")


def _guard_reader(monkeypatch, wrap):
    """Every data set read through the reader registry (every path a method has to its data) goes
    through `wrap(dataset)` first."""
    registry = type(_READERS)  # a frozen dataclass shared by every registry: only the readers' are wrapped
    load = registry.load

    def guarded(self, name):
        reader = load(self, name)
        return (lambda **kw: wrap(reader(**kw))) if self is _READERS else reader
    monkeypatch.setattr(registry, "load", guarded)


def test_laf_moves_the_extractor_leaves_the_head_bit_equal_and_reads_no_label_anywhere(zoo_dir, tmp_path,
                                                                                       monkeypatch):
    model = ensure("digits-cnn", zoo_dir)
    forget, keep = _split(model, 40)

    def unlabelled(data):
        return dataclasses.replace(data, y=np.zeros(0, dtype=np.int64).view(_Forbidden))  # a copy: readers cache
    _guard_reader(monkeypatch, unlabelled)
    get_method("laf").run(UnlearnTask("classifier", model, tmp_path / "laf", forget, keep, Scope(labels_known=False),
                                      params={"epochs": 2, "vae_epochs": 2}))
    before, after = load_tensors(model), load_tensors(tmp_path / "laf")
    head = [k for k in before if k.startswith("head.")]
    extractor = [k for k in before if k.startswith("extractor.")]
    assert head and extractor
    # a retrain from scratch would move the head; LAF never updates it
    assert all(torch.equal(before[k], after[k]) for k in head)
    # returning the input unchanged would leave the extractor where it was
    assert any(not torch.equal(before[k], after[k]) for k in extractor)


def test_acu_reads_no_retained_sample_and_changes_the_head(zoo_dir, tmp_path, monkeypatch):
    model = ensure("digits-acu", zoo_dir)
    forget, keep = _split(model, 20)
    allowed = set(forget)

    def forget_only(data):
        X, y = data.X, data.y
        rows = data.rows

        def take(ids):
            extra = set(ids) - allowed
            assert not extra, f"ACU read {len(extra)} retained samples"
            r = rows(ids)
            return X[r], y[r]
        # no direct row access either; a copy, since some readers cache their data set
        guarded = dataclasses.replace(data, X=np.zeros((0, X.shape[1]), dtype=X.dtype).view(_Forbidden),
                                      y=np.zeros(0, dtype=y.dtype).view(_Forbidden))
        guarded.take = take
        return guarded
    _guard_reader(monkeypatch, forget_only)
    get_method("acu").run(UnlearnTask("classifier", model, tmp_path / "acu", forget, keep))
    monkeypatch.undo()
    # a retrain from scratch reads every retained sample (above); returning the input leaves W as it was
    w0, w1 = load_tensors(model), load_tensors(tmp_path / "acu")
    changed = [k for k in w0 if not torch.equal(w0[k], w1[k])]
    assert changed, "ACU's head is bit-equal to the original's"


def test_retrain_is_bit_equal_to_the_familys_retrain_and_not_to_the_original(zoo_dir, tmp_path):
    model = ensure("digits-mlp", zoo_dir)
    forget, keep = _split(model, 20)
    get_method("retrain").run(UnlearnTask("classifier", model, tmp_path / "cand", forget, keep))
    get_family("classifier").retrain(model, keep, tmp_path / "again")
    cand, again, original = (load_tensors(p) for p in (tmp_path / "cand", tmp_path / "again", model))
    assert all(torch.equal(cand[k], again[k]) for k in cand)  # the exact reference, not an approximation
    assert any(not torch.equal(cand[k], original[k]) for k in cand)  # not the input returned


@pytest.mark.parametrize("name", ["digits-mlp"])
def test_a_retrain_with_another_seed_is_not_the_retrain(name, zoo_dir, tmp_path):
    """The stand-in the "retrain" assertions above must tell apart: same data, another seed."""
    model = ensure(name, zoo_dir)
    _, keep = _split(model, 20)
    fam = get_family("classifier")
    fam.retrain(model, keep, tmp_path / "ref")
    other = fam.seeded_retrain(tmp_path / "ref", keep, 1)
    a, b = load_tensors(tmp_path / "ref"), load_tensors(other)
    assert any(not torch.equal(a[k], b[k]) for k in a)
