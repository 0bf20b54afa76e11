"""How far the `holdout` reference policy agrees with the `retrain` policy.

    python -m benchmarks.reference_policies [--draws 4] [--worlds digits-mlp,digits-vit,support-lm]
    python -m benchmarks.reference_policies --markdown-only   # rebuild reference_policies.md from its JSON

A model registered under `holdout` is verified without any retrain: against never-trained holdout
records and the original model. Under `retrain` it is verified against the exact retrain. On models
where both are possible, this scores the same candidates under both and counts how often the verdicts
agree. For each world and each draw of a forget set (subjects drawn at random from the training
records, `SIZES` of them, never tuned on), two candidates:
- an exact retrain with another seed (a correct answer: both policies should pass it; the `retrain`
  policy's own reference is the retrain with the model's seed);
- the unchanged original (doing nothing: both policies should fail it).
Worlds: `digits-mlp` (the zoo's MLP on digits), `digits-vit` (the walkthrough's Hugging Face ViT,
registered from its manifest), `support-lm` (the walkthrough's fine-tuned GPT-2, registered from its
tickets). The diffusion family has one policy (`holdout`) and is not compared.

Writes benchmarks/results/reference_policies.json and reference_policies.md.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.pages import page
from unlearn import registration
from unlearn.artifacts import read_meta, write_meta
from unlearn.contracts import Scope
from unlearn.data import records as rec
from unlearn.families import get_family
from unlearn.settings import Settings
from unlearn.store.db import migrate, session_scope
from unlearn.verification import gates_for
from unlearn.zoo import ensure

RESULTS = Path(__file__).parent / "results"
SIZES = (1, 5, 20)  # subjects per forget set, cycled over the draws
CANDIDATES = ("retrain, other seed", "original (do nothing)")


def reseeded(model_dir: Path, out_dir: Path, k: int) -> Path:
    """A copy of `model_dir` whose training seed (and recipe seed) is moved by `k`: retraining it gives an
    exact retrain that differs from the reference only by its randomness."""
    shutil.copytree(model_dir, out_dir, ignore=shutil.ignore_patterns("manifest.json"))
    meta = read_meta(out_dir)
    if "seed" in meta:
        meta["seed"] = int(meta["seed"]) + k
    if isinstance(meta.get("recipe"), dict) and "seed" in meta["recipe"]:
        meta["recipe"] = {**meta["recipe"], "seed": int(meta["recipe"]["seed"]) + k}
    write_meta(out_dir, meta)
    return out_dir


def _registered(work: Path, name: str, reg: registration.Registration) -> Path:
    settings = Settings(data_dir=work / "data")
    migrate(settings.resolved_database_url)
    with session_scope(settings.resolved_database_url) as s:
        registration.register(s, reg, artifact_root=settings.resolved_artifact_root, salt=settings.subject_salt)
    return settings.resolved_artifact_root / name / "v1"


def world_digits_mlp(work: Path) -> Path:
    return ensure("digits-mlp", work / "zoo")


def world_digits_vit(work: Path) -> Path:
    from examples.byo.digits_vit import build_digits_vit

    paths = build_digits_vit(work / "models")
    return _registered(work, "digits-vit", registration.Registration(
        name="digits-vit", family="classifier", path=paths["model"], records=paths["manifest"],
        fields=rec.FieldMap(id="sample_id", subject="owner", label="label", image="image", split="split"),
        reference="retrain", recipe=registration.load_recipe(paths["recipe"])))


def world_support_lm(work: Path) -> Path:
    from examples.byo.support_lm import build_support_lm

    paths = build_support_lm(work / "models")
    return _registered(work, "support-lm", registration.Registration(
        name="support-lm", family="lm", path=paths["model"], records=paths["records"],
        fields=rec.FieldMap(id="id", subject="customer_id", text="text", split="split"), reference="retrain",
        recipe=registration.load_recipe(paths["recipe"])))


WORLDS: dict[str, Callable[[Path], Path]] = {"digits-mlp": world_digits_mlp, "digits-vit": world_digits_vit,
                                             "support-lm": world_support_lm}


def forget_draw(family: str, v1: Path, n_subjects: int, seed: int) -> tuple[list[str], list[str]]:
    """`n_subjects` subjects drawn from the training records: (their training ids, every other training id)."""
    train = [r for r in get_family(family).samples(v1) if r.split == "train"]
    subjects = sorted({r.subject_hash or r.subject for r in train if (r.subject_hash or r.subject)})
    chosen = set(random.Random(seed).sample(subjects, n_subjects))
    forget = [r.sample_id for r in train if (r.subject_hash or r.subject) in chosen]
    return forget, [r.sample_id for r in train if (r.subject_hash or r.subject) not in chosen]


def run_world(name: str, work: Path, draws: int) -> list[dict[str, Any]]:
    v1 = WORLDS[name](work)
    family = read_meta(v1)["family"]
    fam = get_family(family)
    scope = Scope(type="subject")
    gates = gates_for(family, "retrain", scope)
    rows = []
    for d in range(draws):
        n = SIZES[d % len(SIZES)]
        forget, keep = forget_draw(family, v1, n, seed=1000 + d)
        t0 = time.perf_counter()
        reference = work / f"{name}-ref-{d}"
        fam.retrain(v1, keep, reference)
        other = work / f"{name}-other-{d}"
        fam.retrain(reseeded(v1, work / f"{name}-reseeded-{d}", 1 + d), keep, other)
        for label, cand in zip(CANDIDATES, (other, v1), strict=True):
            by_retrain = fam.verify(cand, reference, forget, keep, scope, thresholds=gates)
            by_holdout = fam.verify(cand, None, forget, keep, scope, thresholds=gates)
            rows.append({"world": name, "draw": d, "subjects": n, "forget": len(forget), "candidate": label,
                         "retrain": by_retrain.passed, "holdout": by_holdout.passed,
                         "retrain_failed": [c.name for c in by_retrain.criteria if not c.passed],
                         "holdout_failed": [c.name for c in by_holdout.criteria if not c.passed]})
            print(json.dumps(rows[-1]), flush=True)
        rows[-1]["seconds"] = round(time.perf_counter() - t0, 1)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| world | candidate | draws | retrain passes | holdout passes | agree |", "|---|---|---:|---:|---:|---:|"]
    for world in dict.fromkeys(r["world"] for r in rows):
        for cand in CANDIDATES:
            sel = [r for r in rows if r["world"] == world and r["candidate"] == cand]
            if sel:
                lines.append(f"| {world} | {cand} | {len(sel)} | {sum(r['retrain'] for r in sel)} | "
                             f"{sum(r['holdout'] for r in sel)} | {sum(r['retrain'] == r['holdout'] for r in sel)} |")
    agree = sum(r["retrain"] == r["holdout"] for r in rows)
    lines.append(f"| **all** | | {len(rows)} | {sum(r['retrain'] for r in rows)} | {sum(r['holdout'] for r in rows)} "
                 f"| **{agree} ({agree / max(len(rows), 1):.0%})** |")
    return "\n".join(lines)


def disagreements(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        if r["retrain"] != r["holdout"]:
            out.append(f"- {r['world']}, draw {r['draw']} ({r['subjects']} subjects, {r['forget']} records), "
                       f"{r['candidate']}: retrain {'pass' if r['retrain'] else 'fail ' + ', '.join(r['retrain_failed'])}"
                       f"; holdout {'pass' if r['holdout'] else 'fail ' + ', '.join(r['holdout_failed'])}")
    return "\n".join(out) or "- none"


def markdown(report: dict[str, Any]) -> str:
    """The page's header, table and disagreements from reference_policies.json."""
    rows = report["rows"]
    draws = ", ".join(f"{w} {len({r['draw'] for r in rows if r['world'] == w})}"
                      for w in dict.fromkeys(r["world"] for r in rows))
    return ("## The holdout policy against the retrain policy\n\n"
            f"Forget sets of {', '.join(map(str, report['sizes']))} subjects drawn at random (cycled over each "
            f"world's draws: {draws}); each candidate verified under both policies with the same gates.\n\n"
            + table(rows) + "\n\nWhere they differ:\n\n" + disagreements(rows) + "\n")


def regenerate(results: Path = RESULTS) -> str:
    """The page (reference_policies.md) as rebuilt from the stored reference_policies.json under `results`:
    what --markdown-only writes."""
    return page("reference_policies", markdown(json.loads((results / "reference_policies.json").read_text())))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--draws", type=int, default=6)
    p.add_argument("--worlds", default=",".join(WORLDS))
    p.add_argument("--work", help="a folder to keep the models in (default: a temporary one)")
    p.add_argument("--keep-others", action="store_true",
                   help="keep the stored rows of worlds not run this time (one table from runs of one world each)")
    p.add_argument("--markdown-only", action="store_true", help="rewrite reference_policies.md from its stored JSON")
    args = p.parse_args()
    if args.markdown_only:
        (RESULTS / "reference_policies.md").write_text(regenerate())
        return
    rows: list[dict[str, Any]] = []
    stored = RESULTS / "reference_policies.json"
    if args.keep_others and stored.exists():
        rows = [r for r in json.loads(stored.read_text())["rows"] if r["world"] not in args.worlds.split(",")]
    with tempfile.TemporaryDirectory(prefix="unlearn-refpol-") as tmp:
        work = Path(args.work or tmp)
        for name in args.worlds.split(","):
            rows += run_world(name, work / name, args.draws)
    RESULTS.mkdir(exist_ok=True)
    report = {"sizes": SIZES, "rows": rows}
    (RESULTS / "reference_policies.json").write_text(json.dumps(report, indent=2))
    md = page("reference_policies", markdown(report))
    (RESULTS / "reference_policies.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
