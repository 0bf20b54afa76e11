"""Bytes kept per version: each method of each zoo model run once, its candidate stored as the registry
stores it (a delta against the parent where that saves bytes, `unlearn.deltas`), against a whole copy.

    python -m benchmarks.delta_storage [--zoo DIR] [--models digits-mlp,digits-acu,...]

For every (model, method): the zoo model is the parent (version 1, stored whole); the method forgets the
first subject's training samples of the model's data set (every sample of a subject: a privacy
request); the candidate's full manifest is written and `unlearn.deltas.store_delta` stores it, exactly
the call `unlearn.registry.register_version` makes. Reported: the whole folder's bytes, the bytes kept,
how many tensors the method changed, and the seconds a host without the composed copy takes to rebuild
it (`unlearn.artifacts.locate`, checked against both manifests). Only models already in the zoo are run
(this script builds nothing). One torch thread. Writes benchmarks/results/delta_storage.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from unlearn import deltas
from unlearn.artifacts import locate, write_manifest
from unlearn.contracts import Scope
from unlearn.families import get_family
from unlearn.manifests import MANIFEST
from unlearn.methods import get_method, methods_for
from unlearn.methods.base import UnlearnTask
from unlearn.zoo import ZOO

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("digits-mlp", "digits-cnn", "digits-acu", "people-lm", "digits-diffusion")


def _subject_forget(model_dir: Path, family: str) -> tuple[list[str], list[str], str]:
    """The first subject's training samples (else the first ten training samples), and the rest."""
    records = [r for r in get_family(family).samples(model_dir) if r.split == "train"]
    subjects = sorted({r.subject for r in records if r.subject})
    if subjects:
        forget = [r.sample_id for r in records if r.subject == subjects[0]]
        what = f"subject {subjects[0]}"
    else:
        forget, what = [r.sample_id for r in records[:10]], "first 10 training samples"
    keep = sorted({r.sample_id for r in records} - set(forget))
    return sorted(forget), keep, what


def _changes(out: Path, parent: Path) -> dict[str, Any]:
    """Per safetensors file of the candidate: how many tensors (and bytes of them) differ from the parent's."""
    files = {}
    for path in sorted(out.rglob("*.safetensors")):
        name = str(path.relative_to(out))
        parts = deltas.tensor_delta(path, parent / name) if (parent / name).exists() else None
        if parts is None:
            files[name] = {"changed": "new or restructured"}
            continue
        changed, same, _ = parts
        files[name] = {"tensors_changed": sorted(changed), "tensors": len(changed) + len(same),
                       "bytes_changed": sum(t.numel() * t.element_size() for t in changed.values())}
    return files


def run_one(zoo: Path, model: str, method: str, work: Path) -> dict[str, Any]:
    family = ZOO[model].family
    parent = work / model / "v1"
    if not parent.exists():
        shutil.copytree(zoo / model, parent, ignore=shutil.ignore_patterns(MANIFEST))
        write_manifest(parent)
    forget, keep, what = _subject_forget(parent, family)
    out = work / model / method
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    get_method(method).run(UnlearnTask(family=family, base_dir=parent, out_dir=out, forget_ids=forget,
                                       retain_ids=keep, scope=Scope(), params={}))
    method_s = time.perf_counter() - t0
    full_sha = write_manifest(out)
    changes = _changes(out, parent)
    t0 = time.perf_counter()
    stored = deltas.store_delta(out, base=parent, base_ref=str(parent))
    store_s = time.perf_counter() - t0
    row = {"model": model, "family": family, "method": method, "forget": what, "forget_samples": len(forget),
           "full_bytes": stored.full_bytes, "stored_bytes": stored.bytes,
           "stored_fraction": round(stored.bytes / stored.full_bytes, 4), "delta": stored.delta,
           "method_seconds": round(method_s, 2), "store_seconds": round(store_s, 3), "changes": changes,
           "tensors_changed": sum(len(c.get("tensors_changed", ())) for c in changes.values()),
           "tensors": sum(c.get("tensors", 0) for c in changes.values())}
    if stored.delta:
        row["files_from_parent"] = deltas.read_delta(out)["from_base"]
        deltas.drop_composed(out)  # a host that never composed it
        t0 = time.perf_counter()
        composed = locate(str(out))
        row["compose_seconds"] = round(time.perf_counter() - t0, 3)
        assert json.loads((composed / MANIFEST).read_text())["sha256"] == full_sha
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", type=Path, default=Path(os.environ.get("UNLEARN_TEST_ZOO", ".unlearn/zoo")))
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows, absent = [], []
    with tempfile.TemporaryDirectory(prefix="delta-storage-") as tmp:
        for model in args.models.split(","):
            if not (args.zoo / model / "unlearn.json").exists():
                absent.append(model)
                continue
            for method in methods_for(ZOO[model].family):
                if method == "acu" and "acu" not in model:
                    continue  # ACU applies to the analytic classifier only
                if method != "acu" and model == "digits-acu" and method != "retrain":
                    continue  # SSD and LAF need the project's MLP/CNN networks
                try:
                    rows.append(run_one(args.zoo, model, method, Path(tmp)))
                except Exception as exc:  # noqa: BLE001  (a method that refuses this model is reported, not fatal)
                    rows.append({"model": model, "method": method, "error": f"{type(exc).__name__}: {exc}"[:300]})
                print(json.dumps(rows[-1]), flush=True)
    result = {"rows": rows, "absent_models": absent, "full_copy_fraction": deltas.FULL_COPY_FRACTION,
              "max_chain": deltas.MAX_CHAIN, "machine": platform.platform(), "torch_threads": 1,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "delta_storage.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "delta_storage.md").write_text(render(result))


def render(result: dict[str, Any]) -> str:
    lines = ["# Bytes kept per version: deltas against the parent", "",
             f"Measured {result['date']} on {result['machine']}, one torch thread (`python -m benchmarks.delta_storage`).",
             "Each method forgets one subject (or the first ten training samples) of the zoo model; its candidate is",
             "stored as `register_version` stores it: the tensors whose bytes changed, with the parent named, or a",
             f"whole copy when more than {result['full_copy_fraction']:.0%} of the bytes changed. *compose s*: a host",
             "without the composed copy rebuilding it from parent + delta, both manifests checked.", "",
             "| model | method | whole folder (bytes) | kept (bytes) | kept / whole | stored as | tensors changed "
             "| method s | compose s |",
             "|---|---|---:|---:|---:|---|---|---:|---:|"]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['method']} | – | – | – | not run: {r['error'][:120]} | | | |")
            continue
        changed = f"{r['tensors_changed']} of {r['tensors']}"
        lines.append(f"| {r['model']} | {r['method']} | {r['full_bytes']:,} | {r['stored_bytes']:,} | "
                     f"{r['stored_fraction']:.1%} | {'delta' if r['delta'] else 'whole'} | {changed} | "
                     f"{r['method_seconds']} | {r.get('compose_seconds', '–')} |")
    lines += ["", "Which tensors each method changed (bytes of the changed tensors):", ""]
    for r in result["rows"]:
        for name, c in (r.get("changes") or {}).items():
            what = (f"{', '.join(c['tensors_changed']) or 'none'} ({c['bytes_changed']:,} bytes)"
                    if "tensors_changed" in c else c["changed"])
            lines.append(f"- {r['model']} / {r['method']} / {name}: {what}")
    if result["absent_models"]:
        lines += ["", f"Not in the zoo when this ran (not built by this script): {', '.join(result['absent_models'])}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
