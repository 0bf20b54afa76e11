"""The diffusion family: class-conditional diffusers models on a `TabularDataset` of images.

Artifact folder = `DigitsDiffusionPipeline.save_pretrained` output (model_index.json, unet/,
scheduler/) + unlearn.json. unlearn.json keys beyond family/model/dataset:
    "sampler": "multistep" (a teacher: DDIM from noise) | "onestep" (a distilled generator)
    "t_init": the one-step generator's timestep (onestep only)
    "teacher_dir": absolute path of the multi-step teacher a candidate came from; the verifier's
                   gates are relative to that teacher (a multistep base is its own teacher)
    "forgotten": {"<class>": <override class>, ...} every class forgotten so far
    "judge": zoo name of the classifier that judges generations (never used by a method)
    "judge_dir": absolute folder of that judge, written by the zoo when it builds a teacher (a candidate
                 inherits it), so that the verifier finds the judge wherever the teacher was copied
    "train": the teacher's training settings (retrain repeats them)
Requests address classes ("class" or "concept" scope with a label); the data set's records
are listed so that the service can resolve them to sample ids like for any other family.

Text-to-image pipelines (unlearn.json "conditioning": "text"; `unlearn.families.text_diffusion`) belong
to the family too: their records carry captions, a "concept" request names a word of them with an
override, and retrain and verify go through that module and `unlearn.verify.text_diffusion`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from unlearn.artifacts import read_meta, write_meta
from unlearn.contracts import Progress, SampleRecord, Scope, no_progress
from unlearn.data import get_dataset
from unlearn.families import text_diffusion as t2i
from unlearn.families.base import Family
from unlearn.models import class_diffusion, text_diffusion
from unlearn.verify import diffusion as diffusion_gate
from unlearn.verify import text_diffusion as t2i_gate
from unlearn.verify.verdict import Verdict

DEFAULT_JUDGE = "digits-judge"


def default_override(forgotten: int, num_classes: int = 10) -> int:
    """The next class: any fixed, documented choice works; SFD's repo defaults to a fixed label too."""
    return (forgotten + 1) % num_classes


def teacher_of(model_dir: Path) -> Path:
    meta = read_meta(model_dir)
    if meta.get("sampler", "multistep") == "multistep" and "teacher_dir" not in meta:
        return Path(model_dir)
    return Path(meta["teacher_dir"])


def forgotten_map(model_dir: Path) -> dict[int, int]:
    return {int(k): int(v) for k, v in read_meta(model_dir).get("forgotten", {}).items()}


def forgotten_class(scope: Scope, forget_ids: Sequence[str], dataset: dict[str, Any]) -> int:
    """The class a request forgets: the scope's label, else the one label all forget ids share."""
    if scope.label is not None:
        return int(scope.label)
    if scope.concept is not None and scope.concept.strip().isdigit():
        return int(scope.concept)
    data = get_dataset(dataset)
    labels = {int(data.y[i]) for i in data.rows(list(forget_ids))}
    if len(labels) != 1:
        raise ValueError("a diffusion model forgets a class or concept: give scope.label "
                         f"(the forget ids span classes {sorted(labels)})")
    return labels.pop()


def train_teacher_artifact(meta: dict[str, Any], keep_ids: Sequence[str], out_dir: Path, *,
                           device: str = "cpu", progress: Progress = no_progress) -> None:
    """Train a teacher from scratch on `keep_ids` with meta["train"]'s settings and meta["seed"], on the
    UNet of meta["unet_config"] (a registered pipeline's own; default the zoo's 8×8 digits UNet)."""
    data = get_dataset(meta["dataset"])
    X, y = data.take(list(keep_ids))
    t = meta["train"]
    unet = class_diffusion.train_teacher(X, y, steps=t["steps"], lr=t["lr"], batch_size=t["batch_size"],
                                        ema=t["ema"], seed=meta["seed"], device=device, progress=progress,
                                        unet_config=meta.get("unet_config"))
    class_diffusion.save_pipeline(unet, Path(out_dir), sampler="multistep")
    write_meta(Path(out_dir), meta)


def judge_dir_of(model_dir: Path) -> Path:
    """The folder of the classifier that judges the generations of `model_dir` (a teacher or a candidate).

    Read from the model's (else its teacher's) "judge_dir"; artifacts written before the zoo recorded
    it are looked up beside their teacher under their "judge" name. Raises ValueError naming every
    folder looked in when none holds a judge."""
    meta = read_meta(model_dir)
    teacher = teacher_of(model_dir)
    recorded = [meta.get("judge_dir"), read_meta(teacher).get("judge_dir")]
    looked = [Path(p) for p in recorded if p] + [teacher.parent / meta.get("judge", DEFAULT_JUDGE)]
    for folder in dict.fromkeys(looked):
        if (folder / "unlearn.json").exists():
            return folder
    raise ValueError(f"no judge for the diffusion model at {model_dir}: none of {', '.join(map(str, looked))} "
                     "holds one; rebuild its teacher with the zoo (which records the judge's folder) "
                     "and register it again")


def original_of(model_dir: Path) -> Path:
    """The model as trained at the root of `model_dir`'s lineage: "original_dir" where recorded (a
    registered model's v1, a retrain's source), else the teacher."""
    recorded = read_meta(model_dir).get("original_dir")
    return Path(recorded) if recorded else teacher_of(model_dir)


# Forgetting samples (a subject's or a list's) rather than a class: no distillation serves it, since SFD
# and the erasure fine-tune move a whole class's score; the exact answer is the teacher retrained without
# them.
SAMPLE_SCOPES = ("samples", "subject")


class DiffusionFamily(Family):
    name = "diffusion"
    needs_reference = False
    # Gated against the teacher (class forgetting) or against the original and holdout images (samples).
    reference_policies = ("holdout",)
    criteria = ("forget_rate", "retained_acc_ratio", "retained_fd_ratio", "holdout_mia_auc")
    gate_defaults = dict(diffusion_gate.DEFAULT_THRESHOLDS)
    lineage_criteria = ("retained_acc_ratio", "forget_rate", "retained_fd_ratio")

    def samples(self, model_dir: Path) -> list[SampleRecord]:
        return get_dataset(read_meta(model_dir)["dataset"]).records()

    def auto_method(self, model_dir: Path, scope: Scope) -> str:
        return "retrain" if scope.type in SAMPLE_SCOPES else "sfd"

    def retrain(self, model_dir: Path, keep_ids: Sequence[str], out_dir: Path, *,
                device: str = "cpu", progress: Progress = no_progress, seed: int | None = None) -> None:
        """The teacher's recipe on `keep_ids`, written to `out_dir`; `seed`: another seed than the teacher's
        (an exact retrain with another seed, as the gate-power benchmark measures), None for the teacher's."""
        teacher_meta = read_meta(teacher_of(model_dir))
        meta = {k: v for k, v in teacher_meta.items() if k not in ("teacher_dir", "forgotten", "forgotten_concepts")}
        train = t2i.train_teacher_artifact if t2i.is_text_model(model_dir) else train_teacher_artifact
        train({**meta, "sampler": "multistep", "retrained": True, **({"seed": seed} if seed is not None else {}),
               "original_dir": str(original_of(model_dir))}, keep_ids, out_dir, device=device, progress=progress)

    def check_forward(self, model_dir: Path, records: Any) -> None:
        """Load the pipeline and denoise one record's image with its label; ValueError with the reason
        (not class-conditional, another image shape, a label beyond the class embeddings, another noise
        schedule than the one the family's methods train under)."""
        if text_diffusion.is_text_to_image(model_dir):
            raise ValueError("a team's text-to-image pipeline cannot be registered yet: the records format "
                             "carries no captions; the zoo's shapes-t2i is the served text-to-image model")
        pipe = class_diffusion.load_pipeline(model_dir)
        sched = pipe.scheduler.config
        for key, want in class_diffusion.SCHEDULE.items():
            if sched.get(key) != want:
                raise ValueError(f"the pipeline's scheduler has {key}={sched.get(key)!r}; the diffusion methods "
                                 f"train under {key}={want!r}")
        shape = class_diffusion.image_shape(pipe.unet)
        have = tuple(records.meta["image_shape"] or ())
        if have != shape:
            raise ValueError(f"the records' images have shape {have}, the UNet takes {shape}")
        labels = records.column("label")
        if max(labels) >= pipe.unet.config.num_class_embeds:
            raise ValueError(f"label {max(labels)} is beyond the UNet's {pipe.unet.config.num_class_embeds} classes")
        x = torch.as_tensor(records.pixels()[:1], dtype=torch.float32).view(1, *shape) * 2 - 1
        out = pipe.unet(x, torch.tensor([10]), class_labels=torch.tensor([int(labels[0])])).sample
        if out.shape != x.shape or not torch.isfinite(out).all():
            raise ValueError(f"the UNet's output {tuple(out.shape)} is not a finite ε of shape {tuple(x.shape)}")

    def byo_meta(self, model_dir: Path, records: Any, options: dict[str, Any]) -> dict[str, Any]:
        """unlearn.json keys of a registered pipeline: its own UNet config (what a retrain rebuilds), the
        recipe's teacher training (`steps`, `lr`, `batch_size`, `ema`, `seed`) and the judge's folder
        (`options["judge_dir"]`, required: the verifier reads generations through it). Raises ValueError
        for a missing judge or recipe key."""
        if not options.get("judge_dir"):
            raise ValueError("a diffusion model needs a judge classifier folder (--judge) to verify its generations")
        recipe = options.get("recipe") or {}
        missing = [k for k in ("steps", "lr", "batch_size") if k not in recipe]
        if missing:
            raise ValueError(f"the diffusion recipe needs {', '.join(missing)} (teacher training steps, "
                             "learning rate, batch size; optional ema and seed)")
        unet_config = {k: v for k, v in json.loads((Path(model_dir) / "unet" / "config.json").read_text()).items()
                       if not k.startswith("_")}
        return {"sampler": "multistep", "seed": int(recipe.get("seed", 0)), "unet_config": unet_config,
                "judge_dir": str(options["judge_dir"]),
                "train": {"steps": int(recipe["steps"]), "lr": float(recipe["lr"]),
                          "batch_size": int(recipe["batch_size"]), "ema": float(recipe.get("ema", 0.995))}}

    def verify(self, candidate_dir: Path, reference_dir: Path, forget_ids: Sequence[str],
               retain_ids: Sequence[str], scope: Scope, *, device: str = "cpu",
               thresholds: dict[str, float] | None = None, report_dir: Path | None = None) -> Verdict:
        meta = read_meta(candidate_dir)
        if t2i.is_text_model(candidate_dir):
            return self.verify_text(candidate_dir, reference_dir, scope, device=device, thresholds=thresholds,
                                    report_dir=report_dir)
        if scope.type in SAMPLE_SCOPES:
            return diffusion_gate.verify_samples(candidate_dir, original_of(candidate_dir), judge_dir_of(candidate_dir),
                                                 forget_ids=forget_ids, dataset=meta["dataset"], thresholds=thresholds,
                                                 report_dir=report_dir, device=device)
        c = forgotten_class(scope, forget_ids, meta["dataset"])
        earlier = forgotten_map(candidate_dir)
        override = earlier.get(c, default_override(c))
        num_classes = get_dataset(meta["dataset"]).num_classes
        retained = [k for k in range(num_classes) if k != c and k not in earlier]
        teacher = teacher_of(candidate_dir)
        return diffusion_gate.verify_diffusion(candidate_dir, teacher, judge_dir_of(candidate_dir),
                                forgotten=c, override=override, retained=retained, dataset=meta["dataset"],
                                reference_dir=reference_dir, thresholds=thresholds, report_dir=report_dir,
                                device=device)

    def verify_text(self, candidate_dir: Path, reference_dir: Path | None, scope: Scope, *, device: str = "cpu",
                    thresholds: dict[str, float] | None = None, report_dir: Path | None = None) -> Verdict:
        """A text-to-image candidate against its teacher on the concept's forget prompts and the held-out
        remaining prompts (`unlearn.verify.text_diffusion`). Only concept requests are served there;
        ValueError otherwise."""
        if scope.type != "concept":
            raise ValueError("a text-to-image model forgets concepts: send a concept scope")
        prompts = t2i.concept_prompts(t2i.captions_of(candidate_dir), scope)
        data = get_dataset(read_meta(candidate_dir)["dataset"])
        heldout = set(prompts.remaining_heldout)
        real = data.X[[i for i, c in enumerate(data.captions or []) if c in heldout]]
        return t2i_gate.verify_text_concept(candidate_dir, teacher_of(candidate_dir), judge_dir_of(candidate_dir),
                                            concept=prompts.concept, override=prompts.override,
                                            forget_prompts=prompts.forget_prompts,
                                            remaining_prompts=prompts.remaining_heldout, real_images=real,
                                            reference_dir=reference_dir,
                                            thresholds=thresholds, report_dir=report_dir, device=device)

    def summary(self, model_dir: Path) -> dict[str, Any]:
        meta = read_meta(model_dir)
        return {"sampler": meta.get("sampler"), "dataset": meta["dataset"],
                "conditioning": meta.get("conditioning", "class"), "forgotten": meta.get("forgotten", {}),
                **({"forgotten_concepts": [c["concept"] for c in meta["forgotten_concepts"]]}
                   if meta.get("forgotten_concepts") else {})}


def load_pipeline(model_dir: Path, device: str = "cpu") -> class_diffusion.DigitsDiffusionPipeline:
    return class_diffusion.load_pipeline(model_dir, device)


__all__ = ["DiffusionFamily", "default_override", "forgotten_class", "forgotten_map", "judge_dir_of",
           "load_pipeline", "original_of", "teacher_of", "train_teacher_artifact"]
