"""A team's class-conditional diffusers pipeline, built from a config with a seed: the stand-in for
"bring your own diffusion model".

    python examples/byo/digits_pipeline.py OUT_DIR

writes, under OUT_DIR:
- `digits-pipeline/`: a `DDPMPipeline` folder (`save_pretrained`) whose `UNet2DModel` takes class labels,
  trained with the DDPM objective on the digits owned by the training customers;
- `digits-pipeline-records.parquet`: one row per image: `sample_id`, `owner` (a customer id),
  `label`, `image` (8×8 floats in [0, 1]) and `split` ("train" or "holdout": never trained on);
- `digits-pipeline-recipe.json`: how the team trained it (steps, learning rate, batch size, EMA, seed);
- `digits-judge/`: a classifier of the digits that judges generations (it never trains the pipeline).

Customers are named `cust-0000` … as in the other stand-ins, so that one customer's request reaches
every model trained on their data.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from diffusers import DDPMPipeline

from unlearn.data import digits
from unlearn.models import class_diffusion, mlp

RECIPE = {"steps": 500, "lr": 2e-3, "batch_size": 128, "ema": 0.995, "seed": 0}


def customer(subject: str) -> str:
    """The stand-ins' customer id for a digits subject ("subject-0042" → "cust-0042")."""
    return "cust-" + subject.rsplit("-", 1)[1]


def build_digits_pipeline(out_dir: Path, *, seed: int = 0, recipe: dict | None = None) -> dict[str, Path]:
    """Build the pipeline, its records, recipe (`RECIPE` unless given) and judge under `out_dir`; returns
    their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = digits.load(seed)
    split = np.where(data.split == "train", "train", "holdout")
    paths = {"pipeline": out_dir / "digits-pipeline", "records": out_dir / "digits-pipeline-records.parquet",
             "recipe": out_dir / "digits-pipeline-recipe.json", "judge": out_dir / "digits-judge"}
    pq.write_table(pa.table({
        "sample_id": [f"img-{i}" for i in data.ids], "owner": [customer(s) for s in data.subjects],
        "label": data.y.astype(np.int64), "image": [x.reshape(8, 8).tolist() for x in data.X],
        "split": split.tolist()}), paths["records"])
    recipe = {**(recipe or RECIPE), "seed": seed}
    paths["recipe"].write_text(json.dumps(recipe, indent=2))
    train = split == "train"
    unet = class_diffusion.train_teacher(data.X[train], data.y[train], steps=recipe["steps"], lr=recipe["lr"],
                                         batch_size=recipe["batch_size"], ema=recipe["ema"], seed=seed)
    DDPMPipeline(unet=unet, scheduler=class_diffusion.new_scheduler()).save_pretrained(
        str(paths["pipeline"]), safe_serialization=True)
    # The judge learns from every image: it evaluates generations, it is never a method's input.
    meta = {"family": "classifier", "model": "digits-judge", "arch": "mlp", "seed": seed + 1,
            "in_features": 64, "hidden": 256, "num_classes": 10}
    judge = mlp.fit(mlp.build(meta), data.X, data.y, epochs=60, lr=1e-3, batch_size=64, seed=seed + 1,
                    weight_decay=1e-4, label_smoothing=0.1)
    mlp.save(judge, meta, paths["judge"])
    return paths


if __name__ == "__main__":
    for name, path in build_digits_pipeline(Path(sys.argv[1] if len(sys.argv) > 1 else "byo-models")).items():
        print(f"{name}: {path}")
