"""Reading and writing artifact folders: safetensors for weights, JSON for everything else.

Weights are never unpickled: `safetensors` only. `unlearn.json` describes the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

META = "unlearn.json"
WEIGHTS = "model.safetensors"


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / META).write_text(json.dumps(meta, indent=2, sort_keys=True))


def read_meta(folder: Path) -> dict[str, Any]:
    path = Path(folder) / META
    if not path.exists():
        raise FileNotFoundError(f"{folder} is not an unlearn artifact folder (no {META})")
    return json.loads(path.read_text())


def save_tensors(folder: Path, tensors: dict[str, torch.Tensor], name: str = WEIGHTS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(folder / name))


def load_tensors(folder: Path, name: str = WEIGHTS, device: str = "cpu") -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / name), device=device)
