"""A team's Hugging Face image classifier, built from a config with a seed: the stand-in for "bring your
own classifier".

    python examples/byo/digits_vit.py OUT_DIR

writes, under OUT_DIR:
- `digits-vit/`: a `ViTForImageClassification` folder (`save_pretrained`: config.json, model.safetensors),
  a tiny ViT (8×8 grey images, 4×4 patches, 2 layers of width 64) trained with AdamW on the digits owned
  by the training customers;
- `digits-vit-manifest.parquet` (and the same rows as `digits-vit-manifest.jsonl`): one row per image:
  `sample_id`, `owner` (a customer id), `label`, `image` (8×8 floats in [0, 1]) and `split` ("train" or
  "holdout": never trained on);
- `digits-vit-recipe.json`: how the team trained it (AdamW learning rate, epochs, batch size, seed).

The team's labels carry noise, as real labelling does: `LABEL_NOISE` of the records (every split alike,
drawn with the seed) name another digit. A network that fits its training labels then memorises the
wrong ones, so it scores visibly better on its own training records than on records it never saw:
the memorisation that the holdout gate (`unlearn.verify.holdout`) must see in the unchanged model and
must no longer see once a customer's records are forgotten. On clean digits a tiny ViT generalises so
well (holdout accuracy ≈ 0.98) that its training records are indistinguishable from unseen ones.

Customers are named `cust-0000` … as in the other stand-ins (`examples/byo/digits_pipeline.py`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from transformers.utils import logging as hf_logging

from examples.byo.digits_pipeline import customer
from unlearn.data import digits
from unlearn.models import hf_image

RECIPE = {"lr": 2e-3, "epochs": 40, "batch_size": 64, "seed": 0, "weight_decay": 0.0}
LABEL_NOISE = 0.1
VIT = {"model_type": "vit", "image_size": 8, "patch_size": 4, "num_channels": 1, "hidden_size": 64,
       "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
       "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "num_labels": 10}


def noisy_labels(y: np.ndarray, seed: int, rate: float = LABEL_NOISE) -> np.ndarray:
    """`y` with a seeded `rate` of its entries moved to another class (uniform over the other nine)."""
    rng = np.random.default_rng(seed + 7919)
    flip = rng.random(len(y)) < rate
    return np.where(flip, (y + rng.integers(1, 10, len(y))) % 10, y).astype(np.int64)


def build_digits_vit(out_dir: Path, seed: int = 0) -> dict[str, Path]:
    """Build the model, its manifest (Parquet and JSONL) and its recipe under `out_dir`; returns their paths."""
    torch.set_num_threads(1)  # the figures in the docstring and the tests are single-core
    hf_logging.disable_progress_bar()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = digits.load(seed)
    split = np.where(data.split == "train", "train", "holdout")
    labels = noisy_labels(data.y, seed)
    paths = {"model": out_dir / "digits-vit", "manifest": out_dir / "digits-vit-manifest.parquet",
             "manifest_jsonl": out_dir / "digits-vit-manifest.jsonl", "recipe": out_dir / "digits-vit-recipe.json"}
    table = {"sample_id": [f"img-{i}" for i in data.ids], "owner": [customer(s) for s in data.subjects],
             "label": labels, "image": [x.reshape(8, 8).tolist() for x in data.X], "split": split.tolist()}
    pq.write_table(pa.table(table), paths["manifest"])
    with paths["manifest_jsonl"].open("w") as f:
        for i in range(len(labels)):
            f.write(json.dumps({k: (int(v[i]) if k == "label" else v[i]) for k, v in table.items()}) + "\n")
    recipe = {**RECIPE, "seed": seed}
    paths["recipe"].write_text(json.dumps(recipe, indent=2))
    train = split == "train"
    meta = {"hf_config": VIT, "num_classes": 10, "image_shape": [1, 8, 8], "recipe": recipe}
    hf_image.train(meta, data.X[train], labels[train], paths["model"])
    (paths["model"] / "unlearn.json").unlink()  # the team's folder is a plain save_pretrained folder
    return paths


if __name__ == "__main__":
    for name, path in build_digits_vit(Path(sys.argv[1] if len(sys.argv) > 1 else "byo-models")).items():
        print(f"{name}: {path}")
