"""A pretrained causal LM fine-tuned on a people world, TOFU-style: the customer's model and its retrain.

TOFU (Maini et al., 2024) fine-tunes a pretrained chat model on biographies and question–answer pairs
of fictitious people; its retain model is the same fine-tune of the same base without the forgotten
people. Here the base is any local `save_pretrained` causal-LM folder (`train["base"]`), the texts are
the people's as the tiny world's model reads them (`tiny_lm.epoch_texts`: each biography, and the
question–answer pairs packed `qa_pack` to a text, packed once by the seed), and the loop is
`tiny_lm.finetune`'s (AdamW at a constant rate, gradient norm clipped to 1, texts cut to `max_length`
tokens). With `train["lora"]` ({"r", "alpha"}) only low-rank adapters on every linear layer of the
attention and MLP blocks learn (`peft`, Hu et al. 2021); they are merged into the weights before saving,
so the result is an ordinary folder of the base's architecture that every method and verifier reads as
it is. A biography ends with the text "</s>", as the tiny world's do; to a real tokenizer that is plain
text after the biography, never its end-of-text token, and no criterion reads it (C3 scores raw texts).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unlearn.artifacts import write_meta
from unlearn.contracts import Progress, no_progress
from unlearn.data.people import PeopleWorld
from unlearn.models import tiny_lm

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # Llama's names
# A few passes of small batches at a LoRA learning rate: what a 2-core CPU affords (tens of seconds a step)
DEFAULT_FINETUNE: dict[str, Any] = {"lr": 2e-3, "epochs": 5, "batch_size": 4, "max_length": 160, "qa_pack": 4,
                                    "lora": {"r": 16, "alpha": 32}}


def finetune(world: PeopleWorld, person_ids: Sequence[str], meta: dict[str, Any], out_dir: Path, *,
             device: str = "cpu", progress: Progress = no_progress) -> None:
    """Fine-tune the base folder `meta["train"]["base"]` on the texts of `person_ids`, seeded by
    `meta["seed"]`, and save it (LoRA merged) with the base's tokenizer and `meta` (its "train" completed
    with the defaults used, and "train_s": the fine-tune's wall time in seconds on `device`, loading and
    saving included). Raises KeyError without a base."""
    t0 = time.perf_counter()
    settings = {**DEFAULT_FINETUNE, **meta["train"]}
    seed = int(meta.get("seed", 0))
    model, tokenizer = tiny_lm.load(Path(settings["base"]), device)
    texts = tiny_lm.epoch_texts([world.person(s) for s in person_ids], int(settings["qa_pack"]), random.Random(seed))
    if settings.get("lora"):
        from peft import LoraConfig, get_peft_model

        lora = settings["lora"]
        model = get_peft_model(model, LoraConfig(r=int(lora["r"]), lora_alpha=int(lora["alpha"]), lora_dropout=0.0,
                                                 target_modules=list(LORA_TARGETS)))
    model = tiny_lm.finetune(model, tokenizer, texts, lr=float(settings["lr"]), epochs=int(settings["epochs"]),
                             batch_size=int(settings["batch_size"]), seed=seed,
                             max_length=int(settings["max_length"]), device=device, progress=progress)
    if settings.get("lora"):
        model = model.merge_and_unload()
    tiny_lm.save(model.eval(), tokenizer, {**meta, "train": settings}, Path(out_dir))
    # measured after the weights are written, so the time covers what a retrain costs the service
    write_meta(Path(out_dir), {**meta, "train": settings, "train_s": time.perf_counter() - t0, "device": device})


__all__ = ["DEFAULT_FINETUNE", "LORA_TARGETS", "finetune"]
