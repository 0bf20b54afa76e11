"""The verifier of text-to-image concept forgetting: generations for prompts, read by a judge.

For fixed noise seeds, the candidate and its teacher generate `n_per_prompt` images for each forget
prompt and each held-out remaining prompt (captions that do not mention the concept and that no
method optimised, `unlearn.families.text_diffusion`; they include the concept's neighbours, e.g.
"a red square" beside "a red circle"). A judge classifier (trained separately on the data set's
images, never used by a method) reads each image as one of its classes; its unlearn.json
"class_words" names the words each class stands for (the shapes judge: [shape, colour]).

Criteria, the names and gates of the class-conditional verifier (`unlearn.verify.diffusion`):
- forget_rate: share of the forget prompts' images the judge reads as the concept, <= 5%;
- retained_acc_ratio: share of remaining prompts' images whose judged class has every word the prompt
  says (of the judge's words: "a red square" needs red and square), over the teacher's, >= 0.95;
- retained_fd_ratio: Fréchet distance of the judge's penultimate features between the candidate's
  and the teacher's remaining-prompt images, over the distance between the teacher's images and the
  data set's own images of those captions (how far the teacher itself is from the data), <= 1.25 by
  default: the candidate may move from the teacher by a quarter of the teacher's own error.
Reported, not gated: override_rate (forget prompts' images read as the override), the raw FDs, and
the same figures of the retrained reference when one is given.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from unlearn.artifacts import read_meta
from unlearn.models import text_diffusion
from unlearn.verify.diffusion import (
    DEFAULT_THRESHOLDS,
    Figures,
    frechet_distance,
    gate_rows,
    judge,
    judged_cache_path,
)
from unlearn.verify.verdict import Verdict

N_PER_PROMPT = 20
SEED = 0


@dataclass(frozen=True)
class JudgedPrompts:
    """The judge's view of `n` generations of each prompt by one model."""

    prompts: list[str]  # (N,) the prompt each image was generated for
    predicted: np.ndarray  # (N,) the judge's class
    features: np.ndarray  # (N, F) float64
    images: np.ndarray  # (N, C·H·W) in [0, 1]


@lru_cache(maxsize=32)
def judged_prompts(model_dir: str, judge_dir: str, prompts: tuple[str, ...], n_per_prompt: int = N_PER_PROMPT,
                   seed: int = SEED, device: str = "cpu") -> JudgedPrompts:
    """Generations of `model_dir` for each prompt (n each, noise from `seed`), judged; a multi-step
    model's (20 network evaluations an image) are cached on disk beside its folder, keyed by both
    networks' weights and the settings."""
    pipe = text_diffusion.load_pipeline(Path(model_dir), device)
    listed = [p for p in prompts for _ in range(n_per_prompt)]
    cache = _disk_cache(Path(model_dir), Path(judge_dir), listed, seed) if pipe.config.sampler == "multistep" else None
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            return JudgedPrompts(listed, z["predicted"], z["features"], z["images"])
    images = text_diffusion.generate(pipe, listed, seed=seed)
    predicted, features = judge(Path(judge_dir), images, device)
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, predicted=predicted, features=features, images=images)
            tmp.replace(cache)
        except OSError:
            pass  # a read-only model store only costs the resampling
    return JudgedPrompts(listed, predicted, features, images)


def _disk_cache(model_dir: Path, judge_dir: Path, listed: Sequence[str], seed: int) -> Path:
    return judged_cache_path(model_dir, judge_dir, f"{seed}:{text_diffusion.TEACHER_STEPS}:{'|'.join(listed)}",
                             prefix="t2i-")


def class_words(judge_dir: Path) -> list[set[str]]:
    """The words each judge class stands for (unlearn.json "class_words"). Raises ValueError for a judge
    that does not say: the verifier cannot tell what it reads."""
    words = read_meta(Path(judge_dir)).get("class_words")
    if not words:
        raise ValueError(f"the judge at {judge_dir} has no 'class_words': it cannot judge text prompts")
    return [set(w) for w in words]


def _prompt_words(prompt: str, universe: set[str]) -> set[str]:
    # a plural reads as its singular ("circles" → "circle") where only the singular is a judge word
    out = set()
    for w in prompt.lower().split():
        if w in universe:
            out.add(w)
        elif w.endswith("s") and w[:-1] in universe:
            out.add(w[:-1])
    return out


def figures(forget: JudgedPrompts, remaining: JudgedPrompts, teacher_remaining: JudgedPrompts,
            classes: list[set[str]], concept: str, override: str) -> Figures:
    """The module docstring's figures of one model from its judged forget and remaining generations."""
    universe = set().union(*classes)
    concept_words = _prompt_words(concept, universe) or {concept.lower()}
    override_words = _prompt_words(override, universe) or {override.lower()}
    read = [classes[k] for k in forget.predicted]
    right = [_prompt_words(p, universe) <= classes[k] for p, k in zip(remaining.prompts, remaining.predicted,
                                                                       strict=True)]
    return Figures(
        forget_rate=float(np.mean([bool(concept_words & r) for r in read])),
        override_rate=float(np.mean([bool(override_words & r) for r in read])),
        retained_acc=float(np.mean(right)),
        retained_fd=frechet_distance(remaining.features, teacher_remaining.features))


def verify_text_concept(candidate_dir: Path, teacher_dir: Path, judge_dir: Path, *, concept: str, override: str,
                        forget_prompts: Sequence[str], remaining_prompts: Sequence[str], real_images: np.ndarray,
                        reference_dir: Path | None = None, thresholds: dict[str, float] | None = None,
                        report_dir: Path | None = None, n_per_prompt: int = N_PER_PROMPT,
                        device: str = "cpu") -> Verdict:
    """Gate a text-to-image candidate that forgot `concept` (module docstring). `remaining_prompts`:
    held-out captions without the concept; `real_images` (M, C·H·W) in [0, 1]: the data set's images of
    those captions. Raises ValueError when the judge has no class words."""
    th = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    classes = class_words(judge_dir)
    jd = str(Path(judge_dir).resolve())

    def draws(model_dir: Path) -> tuple[JudgedPrompts, JudgedPrompts]:
        md = str(Path(model_dir).resolve())
        return (judged_prompts(md, jd, tuple(forget_prompts), n_per_prompt, SEED, device),
                judged_prompts(md, jd, tuple(remaining_prompts), n_per_prompt, SEED, device))

    t_forget, t_remaining = draws(teacher_dir)
    _, real_features = judge(Path(judge_dir), real_images, device)
    teacher = figures(t_forget, t_remaining, t_remaining, classes, concept, override)
    scale = frechet_distance(t_remaining.features, real_features)  # the teacher's own distance to the data
    c_forget, c_remaining = draws(candidate_dir)
    cand = figures(c_forget, c_remaining, t_remaining, classes, concept, override)
    ref = figures(*draws(reference_dir), t_remaining, classes, concept, override) if reference_dir else None
    rows = gate_rows(cand, teacher, ref, th, fd_scale=scale, details=(
        f"share of the {len(forget_prompts)} forget prompts' images the judge reads as {concept!r}; "
        f"teacher {teacher.forget_rate:.3f}",
        f"judged accuracy on {len(remaining_prompts)} held-out remaining prompts {cand.retained_acc:.3f} "
        f"over the teacher's {teacher.retained_acc:.3f}",
        f"judge-feature Fréchet distance to the teacher's images of the remaining prompts {cand.retained_fd:.3f} "
        f"over the teacher's own distance to the data's images {scale:.3f}"))
    info = {**cand.as_dict(), **teacher.as_dict("teacher_"), **(ref.as_dict("reference_") if ref else {}),
            "concept": concept, "override": override, "forget_prompts": list(forget_prompts),
            "remaining_prompts": list(remaining_prompts), "n_per_prompt": n_per_prompt,
            "teacher_fd_to_data": scale,
            "teacher_dir": str(teacher_dir)}
    plots = {}
    if report_dir is not None:
        plots["samples"] = str(plot_grid([("teacher", t_forget, t_remaining), ("candidate", c_forget, c_remaining)],
                                         Path(report_dir) / "t2i_samples.png"))
    return Verdict(criteria=rows, info=info, plots=plots)


def plot_grid(models: Sequence[tuple[str, JudgedPrompts, JudgedPrompts]], path: Path, prompts_per_set: int = 4,
              per_prompt: int = 4) -> Path:
    """Rows: a few forget prompts, then a few remaining prompts; one block of columns per model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    side = math.isqrt(models[0][1].images.shape[1] // 3)

    def row(j: JudgedPrompts, prompt: str) -> np.ndarray:
        imgs = [im.reshape(3, side, side).transpose(1, 2, 0)
                for p, im in zip(j.prompts, j.images, strict=True) if p == prompt][:per_prompt]
        return np.hstack(imgs)

    shown = [p for p in dict.fromkeys(models[0][1].prompts)][:prompts_per_set] + \
        [p for p in dict.fromkeys(models[0][2].prompts)][:prompts_per_set]
    fig, axes = plt.subplots(1, len(models), figsize=(2.2 * len(models) + 2.5, 0.55 * len(shown) + 0.8))
    for k, (ax, (title, forget, remaining)) in enumerate(zip(np.atleast_1d(axes), models, strict=True)):
        grid = np.vstack([row(forget if i < prompts_per_set else remaining, p) for i, p in enumerate(shown)])
        ax.imshow(grid, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks(np.arange(len(shown)) * side + (side - 1) / 2, shown if k == 0 else [], fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["JudgedPrompts", "class_words", "figures", "judged_prompts", "plot_grid",
           "verify_text_concept"]
