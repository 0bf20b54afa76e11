"""The classifier family: tabular or small-image classifiers on a `TabularDataset`.

The architecture (`unlearn.json["arch"]`) decides how the network trains and predicts:
an ordinary torch network (`mlp`, `cnn`), a team's Hugging Face image classifier (`hf-image`),
or an analytic head (`analytic`, ACU's), possibly on a frozen Hugging Face backbone.

Bring your own model: a registered folder is either a Hugging Face `…ForImageClassification` folder
(`save_pretrained`) or one of this project's artifacts (unlearn.json with `arch`). Registration calls
`prepare` (the optional analytic-head conversion), `byo_meta` and `check_forward` on the staged copy.
Reference policies: "retrain" (by the team's recipe), "precomputed", and "holdout" (no retrain: the
holdout gate against the registered original, `unlearn.verify.classifier.verify_holdout`).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unlearn.artifacts import read_meta, write_meta
from unlearn.contracts import Progress, SampleRecord, Scope, no_progress
from unlearn.data import TabularDataset, get_dataset
from unlearn.families.base import ChainStep, Family
from unlearn.models import ARCHS, get_arch, hf_image
from unlearn.verify import classifier as classifier_gate
from unlearn.verify import corrective as corrective_gate
from unlearn.verify import exact as exact_gate
from unlearn.verify import holdout as holdout_gate
from unlearn.verify import ulira as ulira_gate
from unlearn.verify.verdict import Verdict, not_applicable

# unlearn.json keys a registration writes itself: a registered project artifact keeps every other key
REGISTRY_KEYS = ("family", "model", "dataset", "reference", "method", "parent_dir", "original_dir")
# The analytic head fitted at registration (`prepare`): a buffer well below the ~10³ training records of
# a small team, away from the d ≈ N interpolation peak, and γ = 1 (research note acu_laf.md, "Pitfalls").
ANALYTIC_HEAD = {"buffer_size": 512, "gamma": 1.0, "seed": 0}
# Architectures whose retrain costs seconds on a CPU, so the membership test (U-LiRA) can afford retrains
# with other seeds; a team's Hugging Face network would cost a fine-tuning run each.
CHEAP_RETRAIN_ARCHS = ("mlp", "cnn", "analytic")
# Other seeds of the U-LiRA retrains: far from the seeds a benchmark draws its own retrains from (1, 2, …).
ULIRA_SEED_OFFSET = 1000


def dataset_of(model_dir: Path) -> TabularDataset:
    return get_dataset(read_meta(model_dir)["dataset"])


def original_of(model_dir: Path) -> Path:
    """The model as registered at the root of `model_dir`'s lineage: "original_dir" where recorded, else
    the original of its "parent_dir" (a method's or retrain's source), else `model_dir` itself. Raises
    ValueError when a parent folder on the way is gone."""
    meta = read_meta(model_dir)
    if meta.get("original_dir"):
        return Path(meta["original_dir"])
    if not meta.get("parent_dir"):
        return Path(model_dir)
    parent = Path(meta["parent_dir"])
    if not (parent / "unlearn.json").is_file():
        raise ValueError(f"{model_dir}: its parent version {parent} is gone, so the lineage's original is unknown")
    return original_of(parent)


def arch_of(model_dir: Path) -> str:
    """The architecture a folder holds: unlearn.json's `arch`, else "hf-image" for a Hugging Face
    `…ForImageClassification` folder. Raises ValueError for anything else."""
    meta_path = Path(model_dir) / "unlearn.json"
    if meta_path.is_file() and read_meta(model_dir).get("arch"):
        return str(read_meta(model_dir)["arch"])
    if hf_image.is_hf_image_folder(Path(model_dir)):
        return "hf-image"
    raise ValueError(f"{model_dir} is neither a Hugging Face image classifier (config.json naming a "
                     "…ForImageClassification architecture) nor a classifier artifact (unlearn.json with arch "
                     f"one of {', '.join(sorted(ARCHS))})")


# What a corrective request's retrain step says in its verdict and certificate.
RETRAIN_KEEPS_BACKDOOR = ("retrained without the flagged samples only: poisoned samples nobody flagged stay in the "
                          "training data, so a backdoor they teach may remain")


class ClassifierFamily(Family):
    name = "classifier"
    criteria = ("forget_acc", "forget_acc_gap", "test_acc", "retain_acc", "privleak", "ulira",  # privacy requests
                "attack_success", "interclass_confusion", "clean_acc", "affected_class_acc",  # corrective requests
                "holdout_mia_auc", "holdout_forget_acc", "holdout_acc")  # reference policy "holdout"
    gate_defaults = {**classifier_gate.DEFAULT_THRESHOLDS, **corrective_gate.DEFAULT_THRESHOLDS,
                     **holdout_gate.GATE_DEFAULTS, **ulira_gate.GATE_DEFAULTS}
    lineage_criteria = ("test_acc", "retain_acc", "forget_acc")
    reference_policies = ("retrain", "precomputed", "holdout")

    def samples(self, model_dir: Path) -> list[SampleRecord]:
        return dataset_of(model_dir).records()

    def auto_method(self, model_dir: Path, scope: Scope) -> str:
        arch = read_meta(model_dir)["arch"]
        if arch == "analytic":
            return "acu"
        if arch not in ("mlp", "cnn"):
            # SSD and LAF are tuned on (and LAF needs the extractor/head split of) the project's own
            # networks; the exact retrain serves any architecture, with or without labels.
            return "retrain"
        if scope.kind == "corrective":
            return "ssd"
        if not scope.labels_known:
            return "laf"
        return "retrain"

    def method_chain(self, model_dir: Path, scope: Scope) -> list[ChainStep]:
        """acu where the head is analytic (exact), else the fast method `auto_method` picks; then the exact
        retrain where the model has a recipe. A corrective request goes SSD on the flagged samples → SSD on
        the operator's larger suspected set (when the request names one) → the retrain without the samples,
        with the warning that dropping the flagged samples alone may keep a backdoor that unflagged poisoned
        samples also taught (Goel et al. 2024, "Corrective machine unlearning": a retrain on a partially
        cleaned set keeps the manipulation)."""
        first = self.auto_method(model_dir, scope)
        steps = [ChainStep(first)]
        if scope.kind == "corrective" and first == "ssd":
            steps.append(ChainStep("ssd", widen=True))
        if first != "retrain" and self.can_retrain(model_dir):
            warning = RETRAIN_KEEPS_BACKDOOR if scope.kind == "corrective" else None
            steps.append(ChainStep("retrain", warning=warning))
        return steps

    def retrain(self, model_dir: Path, keep_ids: Sequence[str], out_dir: Path, *,
                device: str = "cpu", progress: Progress = no_progress) -> None:
        meta = {**read_meta(model_dir), "parent_dir": str(model_dir)}  # the corrective verifier's original
        meta.pop("method", None)
        data = get_dataset(meta["dataset"])
        X, y = data.take(list(keep_ids))
        get_arch(meta["arch"]).train(dict(meta), X, y, out_dir, device=device, progress=progress)

    def exact_update_check(self, candidate_dir: Path, parent_dir: Path, new_forget_ids: Sequence[str], *,
                           device: str = "cpu") -> Verdict | None:
        # ACU's analytic head: checked against its parent's sufficient statistics (unlearn.verify.exact)
        return exact_gate.acu_update_check(candidate_dir, parent_dir, list(new_forget_ids), device=device)

    def verify(self, candidate_dir: Path, reference_dir: Path, forget_ids: Sequence[str],
               retain_ids: Sequence[str], scope: Scope, *, device: str = "cpu",
               thresholds: dict[str, float] | None = None, report_dir: Path | None = None) -> Verdict:
        data = dataset_of(candidate_dir)
        meta = read_meta(candidate_dir)
        thresholds = {**self.gate_defaults, **(thresholds or {})}
        arch = get_arch(meta["arch"])
        if reference_dir is None:
            return self._verify_holdout(candidate_dir, data, forget_ids, scope, device=device, thresholds=thresholds)
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
        candidate = arch.load(candidate_dir, device)
        verdict = classifier_gate.verify_classifier(candidate, ref_arch.load(reference_dir, device),
                                                    data.X, data.y, forget=forget, retain=retain, holdout=holdout,
                                                    test=test, thresholds=thresholds)
        row, info = self._ulira(candidate, candidate_dir, reference_dir, data, forget, retain_ids,
                                device=device, thresholds=thresholds)
        verdict.criteria.append(row)
        verdict.info.update(info)
        if "indistinguishable" in info:
            # the rows that compare the forget set's behaviour with the one reference: where the original
            # is itself within the seed-to-seed spread, their gaps are that spread (`exactness_rule`)
            info["indistinguishable"]["seed_noise_criteria"] = [
                c.name for c in verdict.criteria if c.name in ("forget_acc", "forget_acc_gap", "privleak")]
        return verdict

    def _ulira(self, candidate: Any, candidate_dir: Path, reference_dir: Path, data: TabularDataset,
               forget: np.ndarray, retain_ids: Sequence[str], *, device: str,
               thresholds: dict[str, float]) -> tuple[Any, dict[str, Any]]:
        """The membership test with power (`unlearn.verify.ulira`): the candidate's logit-scaled confidence on
        the forget rows against the lineage's original ("still remembers") and `thresholds["ulira_references"]`
        retrains ("forgot"): the reference plus retrains on `retain_ids` with other seeds, cached beside it.
        Returns the verdict row and its info keys; the row is "not applicable" (with the reason) where the
        original is unknown or the architecture's retrains are too dear to repeat."""
        arch = read_meta(reference_dir)["arch"]
        count = int(thresholds["ulira_references"])
        if arch not in CHEAP_RETRAIN_ARCHS or count < 2:
            return not_applicable("ulira", f"needs at least two retrains; {arch!r} models get "
                                           f"{1 if arch not in CHEAP_RETRAIN_ARCHS else count}"), {}
        try:
            original_dir = original_of(candidate_dir)
        except ValueError as exc:
            return not_applicable("ulira", str(exc)), {}
        try:
            retrains = [reference_dir, *(self.seeded_retrain(reference_dir, retain_ids, k, device=device)
                                         for k in range(1, count))]
        except OSError as exc:  # e.g. a precomputed reference in a folder the service may not write beside
            return not_applicable("ulira", f"the retrains with other seeds cannot be cached: {exc}"), {}
        X, y = data.X[forget], data.y[forget]

        def phi(folder: Path, model: Any = None) -> np.ndarray:
            if model is None:
                model = get_arch(read_meta(folder)["arch"]).load(folder, device)
            return ulira_gate.logit_confidence(model(X), y)

        result = ulira_gate.ulira(phi(candidate_dir, candidate), phi(original_dir), np.stack([phi(r) for r in retrains]),
                                  min_separation=thresholds["ulira_min_separation"])
        return ulira_gate.ulira_criterion(result), ulira_gate.ulira_info(result)

    def seeded_retrain(self, reference_dir: Path, keep_ids: Sequence[str], k: int, *, device: str = "cpu") -> Path:
        """The `k`-th retrain of `reference_dir`'s recipe on `keep_ids` with another seed (the reference's
        + `ULIRA_SEED_OFFSET` + k), cached in `<reference_dir>.seeds/` and written whole (temporary folder,
        then one rename) so that a reader never sees half of one."""
        meta = read_meta(reference_dir)
        seed = int(meta.get("seed", 0)) + ULIRA_SEED_OFFSET + k
        folder = Path(f"{reference_dir}.seeds") / f"seed-{seed}"
        if (folder / "unlearn.json").is_file():
            return folder
        tmp = folder.with_name(f"{folder.name}.tmp-{time.time_ns()}")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            X, y = get_dataset(meta["dataset"]).take(list(keep_ids))
            get_arch(meta["arch"]).train({**meta, "seed": seed}, X, y, tmp, device=device)
            if not folder.exists():
                tmp.rename(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    def _verify_holdout(self, candidate_dir: Path, data: TabularDataset, forget_ids: Sequence[str], scope: Scope, *,
                        device: str, thresholds: dict[str, float]) -> Verdict:
        """Reference policy "holdout": the candidate against never-trained holdout records and the lineage's
        registered original (`original_of`). Raises ValueError for a corrective request (it needs a reference)."""
        if scope.kind == "corrective":
            raise ValueError("a corrective request is verified against a reference model; the holdout policy has none")
        original = original_of(candidate_dir)
        holdout = data.rows(data.ids_in("holdout"))
        if scope.type == "class" and scope.label is not None:
            holdout = holdout[data.y[holdout] == scope.label]  # non-members of the same class
        verdict = classifier_gate.verify_holdout(
            get_arch(read_meta(candidate_dir)["arch"]).load(candidate_dir, device),
            get_arch(read_meta(original)["arch"]).load(original, device), data.X, data.y,
            forget=data.rows(list(forget_ids)), holdout=holdout, thresholds=thresholds)
        verdict.info["original_dir"] = str(original)
        return verdict

    # -- bring your own model ---------------------------------------------------------------------
    def prepare(self, model_dir: Path, records: Any, options: dict[str, Any]) -> None:
        """With `options["analytic_head"]`: turn the staged classifier at `model_dir` (a Hugging Face
        folder, or this project's `mlp` / `cnn`) into an `analytic` artifact in place. Its network moves,
        unchanged, to `backbone/` and stays frozen; its features (the input of its classification head)
        feed a ridge head fitted in closed form, float64, on the records' training split (ACU's setting,
        arXiv:2505.12239; `unlearn.models.analytic` (3)). Every later request is then an exact rank-k
        downdate (`acu`). The fit's unlearn.json keys are written to `model_dir/unlearn.json`, which
        `byo_meta` returns. Raises ValueError for another architecture or weights that do not load."""
        if not options.get("analytic_head"):
            return
        from unlearn.data.records import load_tabular
        from unlearn.models import analytic

        model_dir = Path(model_dir)
        arch = arch_of(model_dir)
        if arch not in ("hf-image", "mlp", "cnn"):
            raise ValueError(f"an analytic head is fitted on the features of an hf-image, mlp or cnn classifier; "
                             f"{model_dir} holds arch {arch!r}")
        # Loading refuses mismatched weights before anything moves.
        num_classes = (int(hf_image.load_hf(model_dir).config.num_labels) if arch == "hf-image"
                       else int(get_arch(arch).load_module(model_dir)[1]["num_classes"]))
        staged = model_dir / analytic.BACKBONE
        staged.mkdir()
        for item in list(model_dir.iterdir()):
            if item != staged:
                shutil.move(str(item), staged / item.name)
        data = load_tabular(str(records.folder))
        meta: dict[str, Any] = {"arch": "analytic", "backbone": arch, **ANALYTIC_HEAD, "num_classes": num_classes,
                                "image_shape": list(data.image_shape)}
        if arch == "hf-image":
            meta.update(normalize=hf_image.normalisation(staged), hf_config=hf_image.hf_config(staged))
        with torch.no_grad():
            first = analytic.load_backbone(arch, staged, meta)(torch.as_tensor(data.X[:1]))
        meta["in_features"] = int(first.reshape(1, -1).shape[1])
        train = data.rows(data.ids_in("train"))
        analytic.train({**meta, "parent_dir": str(model_dir)}, data.X[train], data.y[train], model_dir)
        # The fit is the registered version itself, not a candidate of the folder it was converted from.
        write_meta(model_dir, {k: v for k, v in read_meta(model_dir).items() if k != "parent_dir"})

    def byo_meta(self, model_dir: Path, records: Any, options: dict[str, Any]) -> dict[str, Any]:
        """unlearn.json keys of a registered classifier (beyond family, model, dataset, reference).

        A Hugging Face folder: arch "hf-image", its config (`hf_config`, what a retrain rebuilds), the
        records' image shape, `num_classes` (the config's num_labels), the preprocessor's normalisation
        and the team's recipe (`lr`, `epochs`, `batch_size`, `seed`; optional `base`, `weight_decay`).
        A project artifact (unlearn.json with `arch`, e.g. one `prepare` wrote): its own keys.
        Raises ValueError for another folder, or for the "retrain" policy on a Hugging Face folder
        whose recipe lacks a key (named)."""
        model_dir = Path(model_dir)
        arch = arch_of(model_dir)
        if arch != "hf-image":
            return {k: v for k, v in read_meta(model_dir).items() if k not in REGISTRY_KEYS}
        recipe = dict(options.get("recipe") or {})
        missing = [k for k in hf_image.RECIPE_KEYS if k not in recipe]
        if options.get("reference", "retrain") == "retrain" and missing:
            raise ValueError(f"the retrain reference policy needs a recipe with {', '.join(missing)} "
                             "(how the model was trained: AdamW learning rate, epochs, batch size, seed; "
                             "optional base checkpoint and weight_decay)")
        config = hf_image.hf_config(model_dir)
        shape = records.meta.get("image_shape")
        meta = {"arch": "hf-image", "hf_config": config, "num_classes": int(config.get("num_labels") or
                                                                             len(config.get("id2label") or {})),
                "image_shape": list(shape) if shape else None, "normalize": hf_image.normalisation(model_dir),
                "seed": int(recipe.get("seed", 0))}
        if recipe:
            meta["recipe"] = recipe
        return meta

    def check_forward(self, model_dir: Path, records: Any) -> None:
        """Load the folder and run one record through it; ValueError with the reason: weights that do not
        match the config (missing, unexpected or mis-shaped), a label beyond the model's classes, images of
        another shape than the config's, or logits that are not finite or not one per class."""
        model_dir = Path(model_dir)
        arch = arch_of(model_dir)
        shape = tuple(records.meta.get("image_shape") or ())
        labels = [lbl for lbl in records.column("label") if lbl is not None]
        if not labels:
            raise ValueError("the records hold no labels; a classifier needs them")
        if not shape:
            raise ValueError("the records hold no images; this classifier family reads images")
        if arch == "hf-image":
            hf = hf_image.load_hf(model_dir)
            num_classes = int(hf.config.num_labels)
            want = hf_image.config_shape(hf.config)
            if want is not None and shape != want:
                raise ValueError(f"the records' images have shape {shape}, the model's config takes {want}")
            meta = read_meta(model_dir) if (model_dir / "unlearn.json").is_file() else {}
            predict = hf_image.predictor(hf_image.HFImage(hf, shape, meta.get("normalize")
                                                          or hf_image.normalisation(model_dir)))
        else:
            meta = read_meta(model_dir)
            num_classes = int(meta["num_classes"])
            predict = get_arch(arch).load(model_dir, "cpu")
        if max(labels) >= num_classes:
            raise ValueError(f"label {max(labels)} is beyond the model's {num_classes} classes")
        x = records.pixels(records.ids[:1]).reshape(1, -1)
        try:
            out = predict(x)
        except Exception as exc:  # noqa: BLE001 - any failure of the forward pass is the refusal's reason
            raise ValueError(f"one record of shape {shape} does not run through the model: {exc}") from None
        if out.shape != (1, num_classes) or not np.isfinite(out).all():
            raise ValueError(f"the model's output {tuple(out.shape)} is not finite log-probabilities over "
                             f"{num_classes} classes")

    def can_retrain(self, model_dir: Path) -> bool:
        # a team's Hugging Face classifier retrains by its recipe; the project's architectures always can
        return arch_of(model_dir) != "hf-image" or bool(read_meta(model_dir).get("recipe"))

    def summary(self, model_dir: Path) -> dict[str, Any]:
        meta = read_meta(model_dir)
        return {"arch": meta["arch"], "dataset": meta["dataset"]}


def accuracy_on(model_dir: Path, ids: Sequence[str], device: str = "cpu") -> float:
    """Convenience for tests and benchmarks."""
    data = dataset_of(model_dir)
    X, y = data.take(list(ids))
    logp = get_arch(read_meta(model_dir)["arch"]).load(model_dir, device)(X)
    return float((logp.argmax(1) == y).mean())


__all__ = ["ClassifierFamily", "accuracy_on", "arch_of", "dataset_of", "original_of"]
