"""A tiny GPT-2-style causal LM with its own BPE tokenizer, small enough to memorise on a CPU.

Everything goes through `transformers` and `tokenizers` as a real model would: the tokenizer is
trained locally, both are written with `save_pretrained` and read back with `from_pretrained`
from a local folder, so any local causal-LM folder a user supplies is handled the same way.

Training data for a set of people (see `unlearn.data.people`):
- each person's biography, on its own, from position 0 (what VerbMem and PrivLeak read back);
- their question–answer pairs, shuffled every epoch and packed `qa_pack` to a sequence in MUSE's
  "Question: …\nAnswer: …\n\n" format, so that a few-shot KnowMem prompt looks like training text.
The tokenizer is trained on a separate world of other fictitious people (`TOKENIZER_WORLD_SEED`),
generated only for it: it holds no trained person's data, so a retrained model owes nothing to the
forgotten people, not even its vocabulary, and the target and its retrain reference read text with
the same tokens, as MUSE's models share Llama's tokenizer. (A per-run tokenizer gave the target merges
for the forgotten names that the reference lacks: 87 against 92 tokens per forgotten biography, which
moves Min-K% Prob, hence PrivLeak, for reasons that have nothing to do with unlearning.)
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

from unlearn.artifacts import write_meta
from unlearn.contracts import Progress, no_progress
from unlearn.data.people import PeopleWorld, Person, qa_text

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
TOKENIZER_WORLD_SEED = 10_000  # people generated only to train tokenizers; no model trains on them

DEFAULT_TRAIN: dict[str, Any] = {
    # a 16× wide ReLU MLP (n_inner 2048): with a narrower GELU one, methods cannot remove the forgotten
    # facts without the retained people's (benchmarks/results/defaults_notes.md)
    "vocab_size": 512, "n_positions": 256, "n_embd": 128, "n_layer": 2, "n_head": 4,
    "n_inner": 2048, "activation": "relu",
    # 60 epochs: the target and its reference both know their people's facts, so C4's bar holds across seeds
    "epochs": 60, "lr": 5e-3, "batch_size": 8, "warmup_frac": 0.05, "qa_pack": 4,
}


def train_tokenizer(texts: Sequence[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on `texts`; every encoding starts with BOS."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, tok.token_to_id(BOS))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD)


def tokenizer_corpus(n_people: int = 400) -> list[str]:
    """Biographies and QA texts of a world no model is trained on: the same kind of text, other people."""
    from unlearn.data import people

    world = people.load(seed=TOKENIZER_WORLD_SEED, n_people=n_people)
    return [p.bio for p in world.people] + [qa_text(q.question, q.answer) for p in world.people for q in p.qa]


def build_model(tokenizer: PreTrainedTokenizerFast, settings: dict[str, Any]) -> GPT2LMHeadModel:
    cfg = GPT2Config(vocab_size=len(tokenizer), n_positions=settings["n_positions"], n_embd=settings["n_embd"],
                     n_layer=settings["n_layer"], n_head=settings["n_head"],
                     n_inner=settings["n_inner"], activation_function=settings["activation"],
                     # memorising is the point of the target model: no dropout
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                     pad_token_id=tokenizer.pad_token_id)
    return GPT2LMHeadModel(cfg)


def bio_text(person: Person) -> str:
    return person.bio + EOS


def examples(person: Person) -> list[tuple[str, str]]:
    """Every training text about a person as (prompt, completion): the biography (all completion), then
    each question–answer pair."""
    return [("", bio_text(person)), *qa_examples(person)]


def qa_texts(person: Person) -> list[str]:
    return [prompt + answer for prompt, answer in qa_examples(person)]


def qa_examples(person: Person) -> list[tuple[str, str]]:
    """(prompt, answer) pairs: losses on QA text count the answer only, as TOFU-style unlearning does. Each
    pair is the text exactly as training read it (`qa_text` with its answer: the blank line after the
    answer, never an EOS, which training never put after one)."""
    return [(qa_text(q.question), qa_text(q.question, q.answer)[len(qa_text(q.question)):]) for q in person.qa]


def epoch_texts(people: Sequence[Person], qa_pack: int, rng: random.Random) -> list[str]:
    pairs = [qa_text(q.question, q.answer) for p in people for q in p.qa]
    rng.shuffle(pairs)
    packs = ["".join(pairs[i:i + qa_pack]) for i in range(0, len(pairs), qa_pack)]
    texts = [bio_text(p) for p in people] + packs
    rng.shuffle(texts)
    return texts


def encode(tokenizer: PreTrainedTokenizerFast, texts: Sequence[str], device: str,
           padding_side: str = "right", max_length: int | None = None) -> dict[str, torch.Tensor]:
    """A padded batch of `texts`; cut to `max_length` tokens where given."""
    tokenizer.padding_side = padding_side
    return tokenizer(list(texts), return_tensors="pt", padding=True, truncation=max_length is not None,
                     max_length=max_length).to(device)


def encode_examples(tokenizer: PreTrainedTokenizerFast, examples: Sequence[tuple[str, str]],
                    device: str) -> dict[str, torch.Tensor]:
    """Right-padded (prompt + completion) batch with a `loss_mask` over the completion's tokens only."""
    batch = encode(tokenizer, [p + c for p, c in examples], device)
    n_prompt = torch.tensor([len(tokenizer(p)["input_ids"]) for p, _ in examples], device=device)
    positions = torch.arange(batch["input_ids"].shape[1], device=device)
    batch["loss_mask"] = batch["attention_mask"] * (positions[None, :] >= n_prompt[:, None])
    return batch


def lm_labels(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)


def warmup_cosine(step: int, total: int, warmup_frac: float) -> float:
    warm = max(1, int(warmup_frac * total))
    if step < warm:
        return (step + 1) / warm
    return 0.1 + 0.45 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def train(world: PeopleWorld, person_ids: Sequence[str], meta: dict[str, Any], out_dir: Path, *,
          tokenizer: PreTrainedTokenizerFast | None = None, device: str = "cpu",
          progress: Progress = no_progress) -> None:
    """Train a model from scratch on `person_ids`, seeded by meta["seed"], and save it with its tokenizer:
    `tokenizer` (a retrain keeps its base model's) or a new one from `tokenizer_corpus`."""
    settings = {**DEFAULT_TRAIN, **meta.get("train", {})}
    seed = int(meta.get("seed", 0))
    people = [world.person(s) for s in person_ids]
    if tokenizer is None:
        tokenizer = train_tokenizer(tokenizer_corpus(), settings["vocab_size"])
    torch.manual_seed(seed)
    model = build_model(tokenizer, settings).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=0.0)
    rng = random.Random(seed)
    bs, epochs = settings["batch_size"], settings["epochs"]
    per_epoch = math.ceil((len(people) + math.ceil(len(people) * len(people[0].qa) / settings["qa_pack"])) / bs)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, epochs * per_epoch, settings["warmup_frac"]))
    for epoch in range(epochs):
        texts = epoch_texts(people, settings["qa_pack"], rng)
        total = 0.0
        for i in range(0, len(texts), bs):
            batch = encode(tokenizer, texts[i:i + bs], device)
            loss = model(**batch, labels=lm_labels(batch)).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += loss.item()
        progress((epoch + 1) / epochs, f"epoch {epoch + 1}/{epochs} loss {total / math.ceil(len(texts) / bs):.3f}")
    save(model.eval(), tokenizer, {**meta, "train": settings}, out_dir)


def finetune(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, texts: Sequence[str], *, lr: float,
             epochs: int, batch_size: int, seed: int, max_length: int, device: str = "cpu",
             progress: Progress = no_progress) -> torch.nn.Module:
    """Causal-LM training of `model` on `texts` (next-token cross-entropy on every real token), the loop a
    registered model's recipe names: AdamW at a constant `lr` without weight decay, gradient norm clipped
    to 1, `epochs` passes in batches of `batch_size`, each pass in an order shuffled by `seed`, every text
    cut to `max_length` tokens. Deterministic given `seed` on one device. Texts are used as given (callers
    append the tokenizer's EOS, as the records family does). Returns the model in eval mode."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    order = list(texts)
    n_batches = max(1, math.ceil(len(order) / batch_size))
    for epoch in range(epochs):
        rng.shuffle(order)
        total = 0.0
        for i in range(0, len(order), batch_size):
            batch = encode(tokenizer, order[i:i + batch_size], device, max_length=max_length)
            loss = model(**batch, labels=lm_labels(batch)).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total += loss.item()
        progress((epoch + 1) / epochs, f"epoch {epoch + 1}/{epochs} loss {total / n_batches:.3f}")
    return model.eval()


def save(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, meta: dict[str, Any], out_dir: Path) -> None:
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    write_meta(out_dir, meta)


def load_tokenizer(model_dir: Path) -> PreTrainedTokenizerFast:
    """The tokenizer of any local causal-LM folder, with a pad token (its EOS when it has none)."""
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load(model_dir: Path, device: str = "cpu") -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
    """Any local causal-LM folder: the model in eval mode on `device`, and its tokenizer."""
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True)
    return model.to(device).eval(), load_tokenizer(model_dir)


def token_logprobs_batch(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """log p(x_t | x_<t) for t ≥ 1, shape (B, T-1); positions outside the batch's `loss_mask` (padding,
    and prompts where there is one) are 0. Differentiable."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    target = batch["input_ids"][:, 1:]
    lp = torch.log_softmax(logits.float(), dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return lp * batch.get("loss_mask", batch["attention_mask"])[:, 1:]


def context_length(model: torch.nn.Module) -> int | None:
    """The most positions the model reads (`max_position_embeddings`), None where its config does not say."""
    return getattr(model.config, "max_position_embeddings", None)


@torch.no_grad()
def token_logprobs(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, texts: Sequence[str], *,
                   device: str = "cpu", batch_size: int = 32) -> list[np.ndarray]:
    """Per-token log-probabilities of each whole text (float64), the first token given BOS onwards."""
    # texts of similar length share a batch (biographies and short question–answer texts mixed would pad
    # every question to a biography's length); results come back in the order given
    order = sorted(range(len(texts)), key=lambda k: len(texts[k]))
    out: list[np.ndarray] = [np.zeros(0)] * len(texts)
    for i in range(0, len(order), batch_size):
        chunk = order[i:i + batch_size]
        batch = encode(tokenizer, [texts[k] for k in chunk], device, max_length=context_length(model))
        lp = token_logprobs_batch(model, batch).double().cpu().numpy()
        lengths = batch["attention_mask"].sum(1).cpu().numpy() - 1
        for j, (k, n) in enumerate(zip(chunk, lengths, strict=True)):
            out[k] = lp[j, :n]
    return out


@torch.no_grad()
def generate(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str], *,
             max_new_tokens: int, device: str = "cpu", batch_size: int = 64) -> list[str]:
    """Greedy continuations (the new text only), as MUSE decodes: do_sample=False. Within the model's
    context: fewer new tokens where the prompt leaves less room, and a prompt that leaves none keeps its
    last tokens (left-padded batches end with every prompt's last token)."""
    out: list[str] = []
    limit = context_length(model)
    for i in range(0, len(prompts), batch_size):
        batch = encode(tokenizer, prompts[i:i + batch_size], device, padding_side="left")
        width = batch["input_ids"].shape[1]
        new = max_new_tokens if limit is None else max(1, min(max_new_tokens, limit - width))
        if limit is not None and width + new > limit:
            batch = {k: v[:, width + new - limit:] for k, v in batch.items()}
        ids = model.generate(**batch, max_new_tokens=new, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        out.extend(tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True))
    return out
