"""The three stand-ins of the "Bring your own model" walkthrough, built from configs with a seed:
models a team could have trained with the ecosystem's own tools, none of them by this project's zoo.

    python examples/byo/make_models.py OUT_DIR [--small]

- `support-lm/`: a tiny GPT-2 (`save_pretrained`, with a tokenizer trained with `tokenizers`) fine-tuned
  from `support-lm-base/` on made-up support tickets tagged with customer ids (`support_lm.py`);
- `digits-vit/`: a tiny Hugging Face image classifier trained on scikit-learn's digits, with a Parquet
  manifest of its images and owners (`digits_vit.py`);
- `digits-pipeline/`: a class-conditional diffusers pipeline on the same digits, with its judge
  classifier (`digits_pipeline.py`).

Each comes with its records and its recipe. Customers are `cust-0000` … in all three, so that one
customer's deletion request reaches every model trained on their data. `--small` trains the diffusion
pipeline for fewer steps (the CI run of the walkthrough); the models are otherwise the same.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from examples.byo.digits_pipeline import RECIPE as PIPELINE_RECIPE
from examples.byo.digits_pipeline import build_digits_pipeline
from examples.byo.digits_vit import build_digits_vit
from examples.byo.support_lm import build_support_lm

SMALL_PIPELINE_STEPS = 150


def build_all(out_dir: Path, *, seed: int = 0, small: bool = False) -> dict[str, dict[str, Path]]:
    """Build the three stand-ins under `out_dir`; returns each one's paths (folder, records, recipe, …)."""
    out_dir = Path(out_dir)
    recipe = {**PIPELINE_RECIPE, "steps": SMALL_PIPELINE_STEPS} if small else None
    built = {}
    for name, build in (("support-lm", lambda: build_support_lm(out_dir, seed=seed)),
                        ("digits-vit", lambda: build_digits_vit(out_dir, seed=seed)),
                        ("digits-pipeline", lambda: build_digits_pipeline(out_dir, seed=seed, recipe=recipe))):
        t0 = time.perf_counter()
        built[name] = build()
        print(f"{name}: built in {time.perf_counter() - t0:.0f} s", flush=True)
    (out_dir / "built.json").write_text(json.dumps({k: {n: str(p) for n, p in v.items()} for k, v in built.items()},
                                                   indent=2))
    return built


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", nargs="?", default="byo-models", help="where to write the models (default byo-models)")
    p.add_argument("--seed", type=int, default=0, help="the seed of every model and data set")
    p.add_argument("--small", action="store_true", help="fewer diffusion training steps (CI)")
    args = p.parse_args()
    for name, paths in build_all(Path(args.out_dir), seed=args.seed, small=args.small).items():
        print(f"{name}: " + ", ".join(f"{k}={v}" for k, v in paths.items()))


if __name__ == "__main__":
    main()
