"""The `hf-image` classifier architecture: a team's Hugging Face image classifier, as saved.

The artifact folder is what `AutoModelForImageClassification.save_pretrained` writes (`config.json`,
`model.safetensors`) plus `unlearn.json`. Any model class whose name ends in `ForImageClassification`
and whose head is the attribute `classifier` (ViT, DeiT, ResNet, ConvNeXt, Swin, …) serves.

Inputs are the classifier family's flattened images X (N, C·H·W), float32 in [0, 1] (the records'
`pixels`), reshaped by `meta["image_shape"]` (C, H, W) and normalised by `meta["normalize"]`
(`{"mean": [...], "std": [...]}` per channel, from the folder's `preprocessor_config.json` when
it asks for normalisation; None: the pixels as they are).

unlearn.json keys beyond family/model/dataset (written at registration, `ClassifierFamily.byo_meta`):
    "hf_config":  the model's own `config.json` (a retrain from scratch rebuilds this architecture)
    "image_shape", "num_classes", "normalize", "seed"
    "recipe":     how the team trained it: `lr`, `epochs`, `batch_size`, `seed`, optional `weight_decay`
                  (AdamW's, default 0.0) and `base` (a checkpoint folder fine-tuned from; its head is
                  re-initialised under the seed when its width differs)

Source: Hugging Face transformers, `AutoModelForImageClassification`
(https://huggingface.co/docs/transformers/model_doc/auto).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unlearn.artifacts import read_meta, write_meta
from unlearn.contracts import Progress, no_progress
from unlearn.models import Predictor

RECIPE_KEYS = ("lr", "epochs", "batch_size", "seed")  # required of a recipe; `base`, `weight_decay` optional
# config.json bookkeeping that describes the saving library rather than the architecture
_CONFIG_SKIP = ("_name_or_path", "transformers_version", "architectures", "torch_dtype", "dtype")


def is_hf_image_folder(model_dir: Path) -> bool:
    """Whether `model_dir` holds a `config.json` naming a `…ForImageClassification` architecture."""
    cfg = Path(model_dir) / "config.json"
    if not cfg.is_file():
        return False
    try:
        archs = json.loads(cfg.read_text()).get("architectures") or []
    except (json.JSONDecodeError, AttributeError):
        return False
    return any(str(a).endswith("ForImageClassification") for a in archs)


def load_hf(model_dir: Path, device: str = "cpu", *, num_labels: int | None = None) -> nn.Module:
    """The folder's model, in eval mode. Raises ValueError with the reason when config and weights
    disagree: `from_pretrained` only warns about missing or unexpected weights, so its loading report is
    checked here and any entry refuses the folder. `num_labels` (a base checkpoint fine-tuned into another
    head): its `classifier` is re-initialised where its width differs, and only the head may mismatch."""
    from transformers import AutoModelForImageClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a service's log, not a terminal
    extra: dict[str, Any] = {} if num_labels is None else {"num_labels": num_labels, "ignore_mismatched_sizes": True}
    try:
        model, info = AutoModelForImageClassification.from_pretrained(str(model_dir), output_loading_info=True,
                                                                      **{"ignore_mismatched_sizes": False, **extra})
    except Exception as exc:  # noqa: BLE001 - a size mismatch raises, with the layer in its first line
        raise ValueError(f"{model_dir}: the weights do not load into its config: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None

    def head(key: Any) -> bool:
        return num_labels is not None and str(key[0] if isinstance(key, tuple) else key).startswith("classifier.")

    problems = [f"{k.replace('_', ' ')}: {', '.join(map(str, v[:3]))}{' …' if len(v) > 3 else ''}"
                for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")
                if (v := [e for e in info.get(k) or [] if not head(e)])]
    if problems:
        raise ValueError(f"{model_dir}: the weights do not match its config ({'; '.join(problems)})")
    if not hasattr(model, "classifier"):
        raise ValueError(f"{model_dir}: {type(model).__name__} has no `classifier` head")
    return model.to(device).eval()


def config_shape(config: Any) -> tuple[int, int, int] | None:
    """(C, H, W) the config fixes, or None where it fixes no input size (convolutional models)."""
    size = getattr(config, "image_size", None)
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return int(getattr(config, "num_channels", 3)), int(h), int(w)


def normalisation(model_dir: Path) -> dict[str, list[float]] | None:
    """Per-channel mean and std from `preprocessor_config.json`, when it normalises; else None."""
    path = Path(model_dir) / "preprocessor_config.json"
    if not path.is_file():
        return None
    cfg = json.loads(path.read_text())
    if not cfg.get("do_normalize") or cfg.get("image_mean") is None:
        return None
    return {"mean": [float(v) for v in cfg["image_mean"]], "std": [float(v) for v in cfg["image_std"]]}


def hf_config(model_dir: Path) -> dict[str, Any]:
    """The folder's `config.json` without the saving library's bookkeeping (`_CONFIG_SKIP`)."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    return {k: v for k, v in cfg.items() if k not in _CONFIG_SKIP}


class HFImage(nn.Module):
    """Flattened images (N, C·H·W) → the wrapped model's logits (N, num_labels), or, with
    `features=True`, the input of its `classifier` head (N, d): the pooled output or the CLS state,
    i.e. the frozen backbone an analytic head is fitted on (`unlearn.models.analytic`)."""

    def __init__(self, hf: nn.Module, image_shape: tuple[int, ...], normalize: dict[str, list[float]] | None = None,
                 *, features: bool = False) -> None:
        super().__init__()
        self.hf, self.image_shape, self.features = hf, tuple(int(s) for s in image_shape), features
        self.normalize = normalize
        c = self.image_shape[0]
        mean = torch.as_tensor((normalize or {}).get("mean", [0.0] * c), dtype=torch.float32).view(1, c, 1, 1)
        std = torch.as_tensor((normalize or {}).get("std", [1.0] * c), dtype=torch.float32).view(1, c, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = next(self.hf.parameters()).dtype
        pixels = ((x.reshape(len(x), *self.image_shape) - self.mean) / self.std).to(dtype)
        if not self.features:
            return self.hf(pixel_values=pixels).logits
        captured: list[torch.Tensor] = []
        # The head's input, whatever pooling the model uses before it; the head itself runs but is unused.
        handle = self.hf.classifier.register_forward_hook(lambda _m, inp, _out: captured.append(inp[0]))
        try:
            self.hf(pixel_values=pixels)
        finally:
            handle.remove()
        return captured[0].reshape(len(x), -1)

    kind = "hf-image"

    def save_backbone(self, folder: Path) -> None:
        """Write the wrapped model as a `save_pretrained` folder in float32 (exact for weights that came
        from float32, so the reloaded backbone gives bit-identical features)."""
        hf = self.hf
        if next(hf.parameters()).dtype != torch.float32:
            import copy
            hf = copy.deepcopy(hf).float()
        hf.save_pretrained(str(folder), safe_serialization=True)


def image_shape_of(meta: dict[str, Any], model: nn.Module) -> tuple[int, ...]:
    shape = meta.get("image_shape") or config_shape(model.config)
    if shape is None:
        raise ValueError("unlearn.json names no image_shape and the model's config fixes none")
    return tuple(shape)


def load_module(model_dir: Path, device: str = "cpu") -> tuple[HFImage, dict[str, Any]]:
    """The wrapped torch module (logits from flattened images), for methods that change weights (SSD)."""
    meta = read_meta(model_dir)
    hf = load_hf(model_dir, device)
    return HFImage(hf, image_shape_of(meta, hf), meta.get("normalize")).to(device).eval(), meta


def features(model_dir: Path, meta: dict[str, Any], device: str = "cpu") -> HFImage:
    """The frozen backbone of the folder's model: flattened images → its head's input features."""
    hf = load_hf(model_dir, device)
    return HFImage(hf, image_shape_of(meta, hf), meta.get("normalize"), features=True).to(device).eval()


def save(model: HFImage, meta: dict[str, Any], out_dir: Path) -> None:
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    model.hf.save_pretrained(str(out_dir), safe_serialization=True)
    write_meta(Path(out_dir), meta)


def predictor(model: nn.Module, device: str = "cpu", batch: int = 1024) -> Predictor:
    @torch.no_grad()
    def predict(X: np.ndarray) -> np.ndarray:
        out = [model(torch.as_tensor(X[i:i + batch], dtype=torch.float32, device=device))
               for i in range(0, len(X), batch)]
        logits = torch.cat(out) if out else torch.zeros(0, model.hf.config.num_labels, device=device)
        return torch.log_softmax(logits.double(), dim=1).cpu().numpy()
    return predict


def load(model_dir: Path, device: str = "cpu") -> Predictor:
    """The architecture contract's predictor: flattened images (N, C·H·W) → log-probabilities (N, C), float64."""
    model, _ = load_module(model_dir, device)
    return predictor(model, device)


def build(meta: dict[str, Any], device: str = "cpu") -> nn.Module:
    """The untrained model of `meta`, seeded by `meta["recipe"]["seed"]`: the recipe's `base` checkpoint
    (its head re-initialised when its width is not `num_classes`), else a fresh model of `meta["hf_config"]`."""
    from transformers import AutoConfig, AutoModelForImageClassification

    recipe = meta.get("recipe") or {}
    torch.manual_seed(int(recipe.get("seed", meta.get("seed", 0))))
    if recipe.get("base"):
        return load_hf(Path(recipe["base"]), device, num_labels=int(meta["num_classes"]))
    cfg = dict(meta["hf_config"])
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    return AutoModelForImageClassification.from_config(config).to(device)


def train(meta: dict[str, Any], X: np.ndarray, y: np.ndarray, out_dir: Path, *, device: str = "cpu",
          progress: Progress = no_progress) -> None:
    """From scratch (or from the recipe's `base`) on (X, y) by the recipe: AdamW, `lr`, `epochs`,
    `batch_size`, `weight_decay`, shuffled by `seed`; deterministic given the seed on one device.
    Raises ValueError when meta holds no recipe (a model registered without one cannot be retrained)."""
    from unlearn.models.mlp import fit

    recipe = meta.get("recipe")
    missing = [k for k in RECIPE_KEYS if k not in (recipe or {})]
    if missing:
        raise ValueError(f"an hf-image model retrains by its recipe, which lacks {', '.join(missing)}")
    hf = build(meta, device)
    model = HFImage(hf, image_shape_of(meta, hf), meta.get("normalize")).to(device)
    fit(model, X, y, epochs=int(recipe["epochs"]), lr=float(recipe["lr"]), batch_size=int(recipe["batch_size"]),
        seed=int(recipe["seed"]), device=device, weight_decay=float(recipe.get("weight_decay", 0.0)),
        optimizer=torch.optim.AdamW, progress=progress)
    save(model, meta, out_dir)


__all__ = ["HFImage", "RECIPE_KEYS", "build", "config_shape", "features", "hf_config", "is_hf_image_folder",
           "load", "load_hf", "load_module", "normalisation", "predictor", "save", "train"]
