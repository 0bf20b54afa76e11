"""ACU: exact forgetting for the analytic-head classifier, against a retrain from scratch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearn.artifacts import read_meta
from unlearn.data import get_dataset
from unlearn.families import Scope, get_family
from unlearn.families.classifier import ClassifierFamily, accuracy_on
from unlearn.methods import MethodError, UnlearnTask, get_method
from unlearn.methods.acu import (
    AnalyticClassifier,
    NotHeldError,
    drift_state,
    load,
    load_classifier,
    reanchor,
    reanchor_artifact,
)
from unlearn.zoo import ensure

BUFFER, GAMMA = 1024, 1.0


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


@pytest.fixture(scope="module")
def digits():
    return get_dataset({"name": "digits", "seed": 0})


@pytest.fixture(scope="module")
def train_ids(digits):
    return digits.ids_in("train")


def fitted(digits, ids) -> AnalyticClassifier:
    X, y = digits.take(ids)
    return AnalyticClassifier(64, 10, buffer_size=BUFFER, gamma=GAMMA, seed=0).fit(X, y)


def snapshot(clf: AnalyticClassifier) -> list[torch.Tensor]:
    return [clf.R.clone(), clf.weight.clone(), clf.probe_image.clone(), clf.class_counts.clone()]


def test_seed_fixes_the_buffer_and_the_head_is_float64(digits, train_ids):
    a = AnalyticClassifier(64, 10, buffer_size=256, seed=7)
    b = AnalyticClassifier(64, 10, buffer_size=256, seed=7)
    c = AnalyticClassifier(64, 10, buffer_size=256, seed=8)
    assert torch.equal(a.buffer, b.buffer) and not torch.equal(a.buffer, c.buffer)
    X, y = digits.take(train_ids)
    a.fit(X, y)
    assert a.weight.dtype == torch.float64 and a.R.dtype == torch.float64
    Xt, yt = digits.take(digits.ids_in("test"))
    assert (a.predict(Xt).numpy() == yt).mean() > 0.9


def mixed_requests(digits, train_ids, n: int = 100, removed_class: int = 3) -> list[list[str]]:
    """Single samples, whole subjects and, as request 40, every sample of one class."""
    rng = np.random.default_rng(1)
    label = {s: int(digits.y[digits.index[s]]) for s in train_ids}
    by_subject: dict[str, list[str]] = {}
    for s in train_ids:
        if label[s] != removed_class:
            by_subject.setdefault(digits.subjects[digits.index[s]], []).append(s)
    subjects = [by_subject[k] for k in sorted(by_subject)]
    rng.shuffle(subjects)
    requests, used = [], set()
    for i in range(n - 1):
        if i % 3 == 0:
            requests.append(subjects.pop())
        else:
            pool = [s for s in train_ids if label[s] != removed_class and s not in used
                    and all(s not in g for g in subjects[-5:])]
            requests.append([pool[int(rng.integers(len(pool)))]])
        used.update(requests[-1])
        subjects = [[s for s in g if s not in used] for g in subjects if any(s not in used for s in g)]
    requests.insert(40, [s for s in train_ids if label[s] == removed_class])
    return requests


def test_hundred_sequential_forgets_equal_a_retrain(digits, train_ids):
    clf = fitted(digits, train_ids)
    requests = mixed_requests(digits, train_ids)
    assert len(requests) == 100 and {len(r) for r in requests} >= {1, 2, 3}
    for ids in requests:
        clf.forget(*digits.take(ids), ids=ids)
    gone = {s for r in requests for s in r}
    kept = [s for s in train_ids if s not in gone]
    ref = fitted(digits, kept)
    assert rel_err(clf.weight, ref.weight) <= 1e-9
    assert rel_err(clf.R, ref.R) <= 1e-9
    Xt, yt = digits.take(digits.ids_in("test"))
    assert torch.equal(clf.predict(Xt), ref.predict(Xt))
    assert not (clf.predict(Xt) == 3).any()  # the removed class is never predicted
    assert clf.held == len(kept) and clf.requests == 100
    assert max(clf.residual().values()) < 1e-10


def test_a_batch_larger_than_the_buffer_takes_the_gram_form_and_still_equals_a_retrain(digits, train_ids):
    small = 256  # k > d: the update goes through the d×d form (a million-sample revocation's path)
    X, y = digits.take(train_ids)
    clf = AnalyticClassifier(64, 10, buffer_size=small, gamma=GAMMA, seed=0).fit(X, y)
    forget = train_ids[: small + 300]
    clf.forget(*digits.take(forget), ids=forget)
    kept = train_ids[small + 300:]
    ref = AnalyticClassifier(64, 10, buffer_size=small, gamma=GAMMA, seed=0).fit(*digits.take(kept))
    assert rel_err(clf.weight, ref.weight) <= 1e-9 and rel_err(clf.R, ref.R) <= 1e-9
    assert max(clf.residual().values()) < 1e-10
    assert clf.held == len(kept)
    # and a larger batch than the buffer that holds a sample never learned is refused with R unchanged
    before = snapshot(clf)
    bad = kept[: small + 10] + digits.ids_in("holdout")[:1]
    with pytest.raises(NotHeldError):
        clf.forget(*digits.take(bad), ids=bad)
    assert all(torch.equal(a, b) for a, b in zip(before, snapshot(clf), strict=True))


def test_learn_after_forget_matches_a_fit_on_the_resulting_set(digits, train_ids):
    clf = fitted(digits, train_ids[:600])
    forget, extra = train_ids[100:250], train_ids[600:900] + digits.ids_in("holdout")[:50]
    clf.forget(*digits.take(forget), ids=forget)
    clf.learn(*digits.take(extra), ids=extra)
    clf.learn(*digits.take(forget[:20]), ids=forget[:20])  # learning a forgotten sample again is allowed
    result = [s for s in train_ids[:600] if s not in set(forget[20:])] + extra
    ref = fitted(digits, result)
    assert rel_err(clf.weight, ref.weight) <= 1e-9
    Xt, _ = digits.take(digits.ids_in("test"))
    assert torch.equal(clf.predict(Xt), ref.predict(Xt))
    clf.forget(*digits.take(forget[:5]), ids=forget[:5])  # and it can then be forgotten once more


def test_forgetting_what_is_not_held_is_refused_before_R_changes(digits, train_ids):
    clf = fitted(digits, train_ids)
    holdout = digits.ids_in("holdout")
    clf.forget(*digits.take(train_ids[:3]), ids=train_ids[:3])
    before = snapshot(clf)
    bad = {
        "never learned": holdout[:1],
        "held plus one never learned": train_ids[10:20] + holdout[:1],
        "already forgotten": train_ids[2:3],
        "twice in one request": [train_ids[50], train_ids[50]],
    }
    for why, ids in bad.items():
        with pytest.raises(NotHeldError):
            clf.forget(*digits.take(ids), ids=ids)
        assert all(torch.equal(a, b) for a, b in zip(before, snapshot(clf), strict=True)), why
    with pytest.raises(NotHeldError, match="already forgotten"):
        clf.forget(*digits.take(train_ids[2:3]), ids=train_ids[2:3])  # caught by id
    with pytest.raises(NotHeldError, match="not held"):
        clf.forget(*digits.take(train_ids[2:3]))  # caught by content, without ids


def test_a_second_downdate_without_the_ledger_silently_corrupts_R(digits, train_ids):
    """Why the ledger exists: the algebra itself accepts forgetting a sample twice."""
    clf = fitted(digits, train_ids)
    x = clf.expand(digits.take(train_ids[:1])[0])
    y = clf._targets(digits.y[digits.rows(train_ids[:1])])
    for _ in range(2):
        clf.R, clf.weight, clf.probe_image, clf.probe_target = clf._woodbury(x, y, -1)  # no error raised
    assert rel_err(clf.weight, fitted(digits, train_ids[1:]).weight) > 1e-3


def test_drift_guard_recommends_and_reanchor_needs_exactly_the_held_samples(digits, train_ids):
    clf = fitted(digits, train_ids)
    clf.forget(*digits.take(train_ids[:2]))
    clf.forget(*digits.take(train_ids[2:3]))
    state = drift_state(clf, {})
    assert not state["reanchor_recommended"] and state["requests_since_anchor"] == 2
    assert "historical data" in state["reanchor_needs"]
    assert drift_state(clf, {"acu": {"drift_tol": 1e-30}})["reanchor_recommended"]
    assert "requests since" in drift_state(clf, {"acu": {"reanchor_every": 2}})["reanchor_reason"]
    with pytest.raises(MethodError, match="exactly the samples"):
        reanchor(clf, *digits.take(train_ids))  # includes the three forgotten samples
    reanchor(clf, *digits.take(train_ids[3:]))
    assert clf.requests == 0 and len(clf.forgotten) == 0
    assert rel_err(clf.weight, fitted(digits, train_ids[3:]).weight) <= 1e-12


class Unreadable(list):
    """Retain ids that fail the test if a method reads them (ACU must not)."""

    def __iter__(self):
        raise AssertionError("ACU read the retained samples")

    def __len__(self):
        raise AssertionError("ACU read the retained samples")


def test_service_path_chains_versions_and_passes_the_verifier(zoo_dir, tmp_path, digits):
    base = ensure("digits-acu", zoo_dir)
    fam = get_family("classifier")
    assert isinstance(fam, ClassifierFamily) and fam.auto_method(base, Scope()) == "acu"
    spec = get_method("acu")
    assert spec.exact and "classifier" in spec.families
    train = digits.ids_in("train")
    subject = digits.subjects[digits.index[train[0]]]
    first = [s for s in train if digits.subjects[digits.index[s]] == subject]
    cls = [s for s in train if digits.y[digits.index[s]] == 5 and s not in first]
    # Two coalesced requests that overlap: the batch names each sample once, one rank-k update.
    facts = spec.run(UnlearnTask("classifier", base, tmp_path / "v1", first + first[:1], Unreadable()))
    assert facts["rank"] == len(first) and not facts["reanchor_recommended"]
    spec.run(UnlearnTask("classifier", tmp_path / "v1", tmp_path / "v2", cls, Unreadable(),
                         scope=Scope(type="class", label=5)))
    assert read_meta(tmp_path / "v2")["acu"]["requests_since_anchor"] == 2  # R chained from v1, not refit
    gone = set(first) | set(cls)
    keep = [s for s in train if s not in gone]
    fam.retrain(base, keep, tmp_path / "ref")
    cand, _ = load_classifier(tmp_path / "v2")
    ref, _ = load_classifier(tmp_path / "ref")
    assert rel_err(cand.weight, ref.weight) <= 1e-9
    assert accuracy_on(tmp_path / "v2", cls) == 0.0
    verdict = fam.verify(tmp_path / "v2", tmp_path / "ref", cls, keep, Scope(type="class", label=5))
    assert verdict.passed, verdict.reasons
    verdict = fam.verify(tmp_path / "v2", tmp_path / "ref", sorted(gone), keep, Scope())
    assert verdict.passed, verdict.reasons
    assert not fam.verify(base, tmp_path / "ref", cls, keep, Scope(type="class", label=5)).passed
    with pytest.raises(MethodError, match="already forgotten"):
        spec.run(UnlearnTask("classifier", tmp_path / "v2", tmp_path / "v3", first[:1], Unreadable()))
    with pytest.raises(MethodError, match="not held"):
        spec.run(UnlearnTask("classifier", tmp_path / "v2", tmp_path / "v3", digits.ids_in("holdout")[:2],
                             Unreadable()))
    assert not (tmp_path / "v3" / "unlearn.json").exists()
    # The operator's re-anchor: a fresh fit on exactly the held samples; the lineage's forgotten ids stay.
    assert reanchor_artifact(tmp_path / "v2", tmp_path / "v2r")["reanchored_on"] == len(keep)
    anchored, meta = load_classifier(tmp_path / "v2r")
    assert meta["acu"]["requests_since_anchor"] == 0 and rel_err(anchored.weight, ref.weight) <= 1e-12
    with pytest.raises(MethodError, match="already forgotten"):
        spec.run(UnlearnTask("classifier", tmp_path / "v2r", tmp_path / "v3", first[:1], Unreadable()))


def test_architecture_contract_returns_log_probabilities(zoo_dir, digits):
    predict = load(ensure("digits-acu", zoo_dir))
    X, y = digits.take(digits.ids_in("test"))
    logp = predict(X)
    assert logp.shape == (len(y), 10) and logp.dtype == np.float64
    assert np.allclose(np.exp(logp).sum(1), 1.0)
    assert (logp.argmax(1) == y).mean() > 0.95


def test_synthetic_data_set_is_seeded_and_split():
    a = get_dataset({"name": "synthetic", "n": 2000, "n_holdout": 300, "n_test": 200, "seed": 3})
    b = get_dataset({"name": "synthetic", "n": 2000, "n_holdout": 300, "n_test": 200, "seed": 3})
    assert np.array_equal(a.X, b.X) and a.X.dtype == np.float32
    assert [len(a.ids_in(s)) for s in ("train", "holdout", "test")] == [2000, 300, 200]
    assert len(set(a.subjects)) < len(a.ids) and set(a.y.tolist()) == set(range(10))
    assert len(a.records()) == 2300


@pytest.mark.slow
def test_synthetic_zoo_model_forgets_a_subject_exactly_at_100k(zoo_dir, tmp_path):
    base = ensure("synthetic-acu", zoo_dir)
    data = get_dataset(read_meta(base)["dataset"])
    train = data.ids_in("train")
    assert len(train) == 100_000
    subject = data.subjects[data.index[train[0]]]
    forget = [s for s in train if data.subjects[data.index[s]] == subject]
    get_method("acu").run(UnlearnTask("classifier", base, tmp_path / "cand", forget, Unreadable()))
    gone = set(forget)
    keep = [s for s in train if s not in gone]
    fam = get_family("classifier")
    fam.retrain(base, keep, tmp_path / "ref")
    assert rel_err(load_classifier(tmp_path / "cand")[0].weight, load_classifier(tmp_path / "ref")[0].weight) <= 1e-9
    assert fam.verify(tmp_path / "cand", tmp_path / "ref", forget, keep, Scope(type="subject")).passed
