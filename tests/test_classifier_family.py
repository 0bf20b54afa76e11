from unlearn.families import Scope, get_family
from unlearn.families.classifier import accuracy_on, dataset_of
from unlearn.zoo import ensure


def test_retrain_reference_forgets_a_class_and_the_original_fails_the_gate(zoo_dir, tmp_path):
    model = ensure("digits-mlp", zoo_dir)
    fam = get_family("classifier")
    data = dataset_of(model)
    train = data.ids_in("train")
    forget = [s for s in train if data.y[data.index[s]] == 3]
    keep = [s for s in train if data.y[data.index[s]] != 3]
    fam.retrain(model, keep, tmp_path / "ref")
    assert accuracy_on(model, forget) > 0.95
    assert accuracy_on(tmp_path / "ref", forget) == 0.0  # never saw a 3: cannot predict one
    scope = Scope(type="class", label=3)
    assert fam.verify(tmp_path / "ref", tmp_path / "ref", forget, keep, scope).passed
    verdict = fam.verify(model, tmp_path / "ref", forget, keep, scope)
    assert not verdict.passed
    assert any(r.startswith("forget_acc") for r in verdict.reasons)
