"""A team's own causal LM fine-tuned on customer support tickets, built from configs with a seed: the
stand-in for "bring your own language model".

    python examples/byo/support_lm.py OUT_DIR

writes, under OUT_DIR:
- `support-lm-base/`: a tiny GPT-2 (`GPT2LMHeadModel` from a small `GPT2Config`) with its tokenizer,
  trained briefly on generic support text: help-desk sentences and tickets about made-up people who are
  not customers (another Faker seed), so that it knows the form of a ticket but no customer's details;
- `support-lm/`: that base fine-tuned on the training customers' tickets (`save_pretrained`, safetensors,
  with its tokenizer): what a team would register;
- `support-tickets.jsonl`: one ticket per line, fields `id` ("tkt-00017"), `customer_id` ("cust-0007"),
  `text` and `split` ("train": fine-tuned on; "holdout": customers never trained on), train and holdout
  in one file, so that registering needs the field map id=id, subject=customer_id, text=text, split=split;
- `support-lm-recipe.json`: how `support-lm` was trained: `base` (the base checkpoint's folder, relative to
  the recipe file), `lr`, `epochs`, `batch_size`, `seed`, `max_length`; the lm family's retrain follows it
  (the same loop, `unlearn.models.tiny_lm.finetune`, on each kept ticket's text + EOS).

Tickets are made up with `Faker` (seeded): each names its customer and carries details of theirs alone (an
order number, a product, a city, a phone number), so that a model that memorised a customer's tickets can
be caught reciting them. Customers are `cust-0000` … as in the other stand-ins (the first `N_TRAIN` are
trained on, the next `N_HOLDOUT` never), so that one customer's request reaches every model trained on
their data. The tokenizer (byte-level BPE, `VOCAB` tokens, `tokenizers`) learns from the base corpus only:
no customer's name or order number is a token of its own.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import torch
from faker import Faker
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from unlearn.models import tiny_lm

N_TRAIN, N_HOLDOUT, TICKETS = 40, 10, 5  # customers trained on, customers never trained on, tickets each
N_GENERIC = 600  # texts of the base corpus
VOCAB = 512
CONFIG = {"n_positions": 128, "n_embd": 128, "n_layer": 2, "n_head": 4, "n_inner": 512}
BASE_TRAIN = {"lr": 3e-3, "epochs": 3, "batch_size": 32, "max_length": 96}  # the base's brief pretraining
RECIPE = {"base": "support-lm-base", "lr": 2e-3, "epochs": 25, "batch_size": 16, "max_length": 96}

PRODUCTS = ["cordless drill", "espresso machine", "standing desk", "rice cooker", "road bike", "air purifier",
            "smart thermostat", "office chair", "tablet stand", "robot vacuum", "kettle", "desk lamp",
            "hiking boots", "blender", "monitor arm", "coffee grinder"]
FAULTS = ["arrived with a cracked case", "stopped working after two days", "was missing its power cable",
          "came in the wrong colour", "makes a grinding noise", "was delivered to the wrong door"]
TEMPLATES = [
    "{name} wrote about order {order}: the {product} shipped to {city} {fault}. Call back on {phone}.",
    "Order {order} for {name} in {city}: the {product} {fault}. {first} asks for a refund, phone {phone}.",
    "{name} ({city}) says the {product} from order {order} {fault}. Reach {first} at {phone}.",
]
HELP = [
    "To reset your password, open the account page and follow the link we send you.",
    "Returns are free within thirty days; print the label from your order page.",
    "Refunds reach your card within five working days after we receive the item.",
    "Our help desk answers every ticket within one working day.",
    "Please keep the original box until the return is complete.",
    "A replacement ships as soon as the courier scans the returned parcel.",
]


def ticket(fake: Faker, name: str, city: str, phone: str) -> str:
    """One ticket of a customer: their name, city and phone with a new order number, product and fault."""
    return fake.random_element(TEMPLATES).format(
        name=name, first=name.split()[0], city=city, phone=phone, order=fake.bothify("ORD-#####"),
        product=fake.random_element(PRODUCTS), fault=fake.random_element(FAULTS))


def customer(fake: Faker) -> tuple[str, str, str]:
    return fake.name(), fake.city(), fake.numerify("###-####")


def generic_corpus(seed: int, n: int = N_GENERIC) -> list[str]:
    """Help-desk sentences and tickets about made-up people who are no customer (a Faker seeded apart)."""
    fake = Faker("en_US")
    fake.seed_instance(seed + 10_000)
    rng = random.Random(seed + 10_000)
    return [rng.choice(HELP) + " " + fake.catch_phrase() + "." if k % 3 == 0 else ticket(fake, *customer(fake))
            for k in range(n)]


def tickets(seed: int) -> list[dict[str, str]]:
    """Every customer's tickets: rows of id, customer_id, text and split."""
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rows = []
    for c in range(N_TRAIN + N_HOLDOUT):
        who = customer(fake)
        for _ in range(TICKETS):
            rows.append({"id": f"tkt-{len(rows):05d}", "customer_id": f"cust-{c:04d}", "text": ticket(fake, *who),
                         "split": "train" if c < N_TRAIN else "holdout"})
    return rows


def new_base(tokenizer: PreTrainedTokenizerFast, seed: int) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), **CONFIG, bos_token_id=tokenizer.bos_token_id,
                                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))


def build_support_lm(out_dir: Path, seed: int = 0) -> dict[str, Path]:
    """Build the base, the fine-tuned model, the tickets and the recipe under `out_dir`; returns their paths.
    About 50 s of CPU time on one core (measured: 94 s wall on a shared 2-core machine)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = paths_in(out_dir)
    corpus = generic_corpus(seed)
    tokenizer = tiny_lm.train_tokenizer(corpus, VOCAB)
    eos = tokenizer.eos_token
    base = tiny_lm.finetune(new_base(tokenizer, seed), tokenizer, [t + eos for t in corpus], seed=seed, **BASE_TRAIN)
    base.save_pretrained(paths["base"], safe_serialization=True)
    tokenizer.save_pretrained(paths["base"])
    rows = tickets(seed)
    paths["records"].write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {**RECIPE, "seed": seed}
    paths["recipe"].write_text(json.dumps(recipe, indent=2))
    model = GPT2LMHeadModel.from_pretrained(paths["base"], local_files_only=True)
    train = [r["text"] + eos for r in rows if r["split"] == "train"]
    tiny_lm.finetune(model, tokenizer, train, **{k: v for k, v in recipe.items() if k != "base"})
    model.save_pretrained(paths["model"], safe_serialization=True)
    tokenizer.save_pretrained(paths["model"])
    return paths


def stage(paths: dict[str, Path], dest: Path, records_dir: Path, *, policy: str = "holdout",
          salt: str = "stand-in") -> dict[str, Any]:
    """What registration does with the stand-in, without the registry (tests and the benchmark): normalise the
    tickets into a records folder at `records_dir`, copy `support-lm` to `dest` with the `unlearn.json` the
    lm family's `byo_meta` gives under `policy`, and check it with `check_forward`. Returns the records
    (`Records`), the canonical rows, the recipe with `base` made absolute, and `dest`."""
    import shutil

    from unlearn.artifacts import write_meta
    from unlearn.data import records
    from unlearn.families import get_family

    fields = records.FieldMap(id="id", subject="customer_id", text="text", split="split")
    rows, _ = records.normalise(records.read_table(paths["records"]), fields, salt=salt)
    records.save(rows, records_dir)
    rec = records.load(str(records_dir))
    recipe = json.loads(paths["recipe"].read_text())
    recipe["base"] = str((paths["recipe"].parent / recipe["base"]).resolve())
    shutil.copytree(paths["model"], dest)
    family = get_family("lm")
    write_meta(dest, {"family": "lm", "model": "support-lm", "dataset": {"name": "records", "path": str(records_dir)},
                      "reference": {"policy": policy},
                      **family.byo_meta(dest, rec, {"recipe": recipe, "reference": policy})})
    family.check_forward(dest, rec)
    return {"records": rec, "rows": rows, "recipe": recipe, "model": dest}


def subject_ids(rows: list[dict[str, Any]], customer_id: str, salt: str = "stand-in") -> list[str]:
    """The sample ids of a customer's tickets, as the registry resolves a subject request."""
    from unlearn.identity import hash_subject

    h = hash_subject(customer_id, salt)
    return [r["sample_id"] for r in rows if r["subject_hash"] == h]


def paths_in(out_dir: Path) -> dict[str, Path]:
    """The stand-in's files under `out_dir` (as `build_support_lm` returns them)."""
    out_dir = Path(out_dir)
    return {"base": out_dir / "support-lm-base", "model": out_dir / "support-lm",
            "records": out_dir / "support-tickets.jsonl", "recipe": out_dir / "support-lm-recipe.json"}


if __name__ == "__main__":
    for name, path in build_support_lm(Path(sys.argv[1] if len(sys.argv) > 1 else "byo-models")).items():
        print(f"{name}: {path}")
