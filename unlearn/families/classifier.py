"""The classifier family: tabular or small-image classifiers on a `TabularDataset`.

The architecture (`unlearn.json["arch"]`) decides how the network trains and predicts:
an ordinary torch network (`mlp`, `cnn`) or an analytic head (`analytic`, ACU's).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unlearn.artifacts import read_meta
from unlearn.contracts import Progress, SampleRecord, Scope, no_progress
from unlearn.data import TabularDataset, get_dataset
from unlearn.families.base import Family
from unlearn.models import get_arch
from unlearn.verify import classifier as classifier_gate
from unlearn.verify import corrective as corrective_gate
from unlearn.verify.verdict import Verdict


def dataset_of(model_dir: Path) -> TabularDataset:
    return get_dataset(read_meta(model_dir)["dataset"])


class ClassifierFamily(Family):
    name = "classifier"
    criteria = ("forget_acc", "forget_acc_gap", "test_acc", "retain_acc", "privleak",  # privacy requests
                "attack_success", "interclass_confusion", "clean_acc", "affected_class_acc")  # corrective requests
    gate_defaults = {**classifier_gate.DEFAULT_THRESHOLDS, **corrective_gate.DEFAULT_THRESHOLDS}
    lineage_criteria = ("test_acc", "retain_acc", "forget_acc")

    def samples(self, model_dir: Path) -> list[SampleRecord]:
        return dataset_of(model_dir).records()

    def auto_method(self, model_dir: Path, scope: Scope) -> str:
        arch = read_meta(model_dir)["arch"]
        if arch == "analytic":
            return "acu"
        if scope.kind == "corrective":
            return "ssd"
        if not scope.labels_known:
            return "laf"
        return "retrain"

    def retrain(self, model_dir: Path, keep_ids: Sequence[str], out_dir: Path, *,
                device: str = "cpu", progress: Progress = no_progress) -> None:
        meta = {**read_meta(model_dir), "parent_dir": str(model_dir)}  # the corrective verifier's original
        meta.pop("method", None)
        data = get_dataset(meta["dataset"])
        X, y = data.take(list(keep_ids))
        get_arch(meta["arch"]).train(dict(meta), X, y, out_dir, device=device, progress=progress)

    def verify(self, candidate_dir: Path, reference_dir: Path, forget_ids: Sequence[str],
               retain_ids: Sequence[str], scope: Scope, *, device: str = "cpu",
               thresholds: dict[str, float] | None = None, report_dir: Path | None = None) -> Verdict:
        data = dataset_of(candidate_dir)
        meta = read_meta(candidate_dir)
        thresholds = {**self.gate_defaults, **(thresholds or {})}
        arch = get_arch(meta["arch"])
        ref_arch = get_arch(read_meta(reference_dir)["arch"])
        if scope.kind == "corrective":
            if "parent_dir" not in meta:
                raise ValueError(f"{candidate_dir}: corrective verification needs the original model; "
                                 "unlearn.json has no parent_dir")
            original = get_arch(read_meta(meta["parent_dir"])["arch"]).load(Path(meta["parent_dir"]), device)
            return corrective_gate.verify_corrective(arch.load(candidate_dir, device), original,
                                     ref_arch.load(reference_dir, device), data, forget_ids, thresholds=thresholds)
        forget = data.rows(list(forget_ids))
        retain = data.rows(list(retain_ids))
        holdout = data.rows(data.ids_in("holdout"))
        # a team's records have no test split: their holdout, never trained on, measures utility too
        test = data.rows(data.ids_in("test") or data.ids_in("holdout"))
        if scope.type == "class" and scope.label is not None:
            # Class removal: non-members of the same class, and utility on the other classes.
            holdout = holdout[data.y[holdout] == scope.label]
            test = test[data.y[test] != scope.label]
        return classifier_gate.verify_classifier(arch.load(candidate_dir, device), ref_arch.load(reference_dir, device),
                                 data.X, data.y, forget=forget, retain=retain, holdout=holdout, test=test,
                                 thresholds=thresholds)

    def summary(self, model_dir: Path) -> dict[str, Any]:
        meta = read_meta(model_dir)
        return {"arch": meta["arch"], "dataset": meta["dataset"]}


def accuracy_on(model_dir: Path, ids: Sequence[str], device: str = "cpu") -> float:
    """Convenience for tests and benchmarks."""
    data = dataset_of(model_dir)
    X, y = data.take(list(ids))
    logp = get_arch(read_meta(model_dir)["arch"]).load(model_dir, device)(X)
    return float((logp.argmax(1) == y).mean())


__all__ = ["ClassifierFamily", "accuracy_on", "dataset_of"]
