"""Versions stored as what they changed against their parent: delta storage of artifact folders.

A model version is a whole folder (`unlearn.artifacts`), and most unlearning methods touch a part of
the weights (ACU a classifier's head, SSD the parameters it dampens). A full float32 copy per version
costs 538 MB for a 135M-parameter LM and over 25 GB for a 7B one, so the registry stores a version as:

- the **stored folder** (the version's `artifact_path`, and what the object store holds): its small
  files as they are, `delta.json`, and for each safetensors file whose tensor names, dtypes and shapes
  are the parent's, a `<file>.delta` safetensors file holding only the tensors whose bytes differ from
  the parent's; any file byte-identical to the parent's same-named file is not stored at all. Its
  `manifest.json` lists these stored files: its hash is `ModelVersion.stored_sha256`.
- the **composed folder** (`<stored>/.composed/`, `COMPOSED`): the whole folder the method wrote, byte
  for byte, rebuilt from the parent's composed folder and the delta (recursively along a chain of
  deltas) the first time a host needs it. Its `manifest.json` is the full folder's manifest written at
  registration, kept inside `delta.json`: its hash is `ModelVersion.weights_sha256`, the same hash a
  version stored whole has, so certificates and lineages compare across both storages.

A version is stored whole (no `delta.json`) when the delta would save little: more than
`FULL_COPY_FRACTION` of the bytes changed (a method that touched everything, e.g. a retrain), the
parent's chain of deltas is already `MAX_CHAIN` long, or the composed bytes would not reproduce the
written file exactly (a safetensors file whose header this library does not write the same way).

Composition is checked: every stored file against the stored manifest, every composed file against
the full manifest; any mismatch raises `DeltaIntegrityError` and leaves no composed folder. The parent
a delta needs must therefore stay: the registry never deletes a registered version's folder (it
quarantines, retires or taints, and keeps the bytes); whoever removes folders by hand must keep every
folder a `delta.json` names as its `base`, or first write the child whole
(`unlearn.registry.materialise_version`, which records its new stored hash).

A PEFT adapter folder, should a method write one, is stored as the method wrote it (its files are new
against the parent, so they are kept whole): its base is the parent named in `delta.json`.

Source: safetensors (`safe_open`, `save_file`); hashes are sha256 of file bytes (`unlearn.artifacts`).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from unlearn.manifests import COMPOSED, MANIFEST, build_manifest, check_manifest, move_into_place, sha256_file

DELTA = "delta.json"
META = "unlearn.json"  # `unlearn.artifacts.META`: kept in every stored folder, so that it describes itself
DELTA_SUFFIX = ".delta"
# Below this saving a delta is not worth a parent it depends on and a composition on every fresh host.
# A policy, not a fitted constant: a delta must save at least a tenth of the version's bytes.
FULL_COPY_FRACTION = 0.9
MAX_CHAIN = 16  # deltas on deltas: a fresh host composes at most this many folders to load one version


class DeltaIntegrityError(ValueError):
    """A stored delta, or what it composes to, does not match its manifest."""


@dataclass(frozen=True)
class Stored:
    """How a registered folder is kept. `sha256`: the stored manifest's hash (the bytes kept);
    `bytes`: the stored files' total size; `full_bytes`: the whole folder's; `delta`: whether the
    folder is stored as a delta against its parent (else whole)."""

    sha256: str
    bytes: int
    full_bytes: int
    delta: bool


def is_delta(folder: Path) -> bool:
    """Whether `folder` is a stored folder holding a delta against a parent."""
    return (Path(folder) / DELTA).is_file()


def read_delta(folder: Path) -> dict[str, Any]:
    """`delta.json` of a stored folder. Raises DeltaIntegrityError when it is unreadable."""
    try:
        return json.loads((Path(folder) / DELTA).read_text())
    except (OSError, ValueError) as exc:
        raise DeltaIntegrityError(f"{DELTA} of {folder} is unreadable: {exc}") from None


def _same_bytes(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality (not `torch.equal`: NaN ≠ NaN and 0.0 = -0.0 there)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


def tensor_delta(path: Path, base: Path) -> tuple[dict[str, torch.Tensor], list[str], dict[str, str]] | None:
    """The tensors of the safetensors file `path` that differ from `base`'s, the names taken from `base`,
    and `path`'s header metadata; None when the two files do not hold the same names (not a delta)."""
    with safe_open(str(path), framework="pt") as new, safe_open(str(base), framework="pt") as old:
        if set(new.keys()) != set(old.keys()):
            return None
        changed, same = {}, []
        for name in sorted(new.keys()):  # one tensor of each at a time: a 7B model never sits in memory twice
            t = new.get_tensor(name)
            if _same_bytes(t, old.get_tensor(name)):
                same.append(name)
            else:
                changed[name] = t
        return changed, same, dict(new.metadata() or {})


def _compose_file(base: Path, delta: Path | None, spec: dict[str, Any], dest: Path) -> None:
    """Write the safetensors file `spec` describes: the tensors named in `from_base` read from `base`, the
    others from `delta`, with the recorded header metadata."""
    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(base), framework="pt") as old:
        for name in spec["from_base"]:
            tensors[name] = old.get_tensor(name)
    if delta is not None:
        with safe_open(str(delta), framework="pt") as new:
            for name in new.keys():
                tensors[name] = new.get_tensor(name)
    save_file(tensors, str(dest), metadata=spec.get("metadata") or None)


def _chain_length(base: Path) -> int:
    """How many deltas lie under the composed folder `base` (0 for a folder stored whole)."""
    stored = base.parent if base.name == COMPOSED else base
    return int(read_delta(stored).get("chain", 1)) if is_delta(stored) else 0


def store_delta(folder: Path, *, base: Path, base_ref: str) -> Stored:
    """Rewrite the candidate `folder` (a whole folder, its full `manifest.json` written) as a delta against
    the parent's composed folder `base`, named `base_ref` (the parent's recorded `artifact_path`), where
    that saves more than `1 - FULL_COPY_FRACTION` of its bytes; else leave it whole. The whole files move
    (a rename, no copy) into `folder/.composed`, ready to load. Returns how the folder is stored.
    Raises OSError when the files cannot be read or written (the folder is then left whole)."""
    folder = Path(folder)
    full = json.loads((folder / MANIFEST).read_text())
    sizes = {name: (folder / name).stat().st_size for name in full["files"]}
    full_bytes = sum(sizes.values())
    whole = Stored(full["sha256"], full_bytes, full_bytes, False)
    if _chain_length(base) >= MAX_CHAIN or not (base / MANIFEST).is_file():
        return whole
    base_files = json.loads((base / MANIFEST).read_text())["files"]
    taken: list[str] = []  # whole files identical to the parent's
    tensors: dict[str, dict[str, Any]] = {}  # per safetensors file: the names taken from the parent
    stored_bytes = 0
    staged = folder / f".delta-{uuid.uuid4().hex[:8]}"
    staged.mkdir()
    try:
        for name, digest in full["files"].items():
            if base_files.get(name) == digest and name != META:  # unlearn.json stays: a folder describes itself
                taken.append(name)
                continue
            parts = (tensor_delta(folder / name, base / name)
                     if name.endswith(".safetensors") and name in base_files else None)
            if parts is None or not parts[1]:  # new, restructured or wholly changed: kept as it is
                stored_bytes += sizes[name]
                continue
            changed, same, metadata = parts
            out = staged / (name + DELTA_SUFFIX)
            out.parent.mkdir(parents=True, exist_ok=True)
            if changed:
                save_file({k: v.contiguous() for k, v in changed.items()}, str(out))
                stored_bytes += out.stat().st_size
            spec = {"from_base": same, "stored": sorted(changed), "metadata": metadata}
            # The composed file must be the written one byte for byte, or the version's hash would change.
            probe = staged / f".probe-{uuid.uuid4().hex[:8]}"
            _compose_file(base / name, out if changed else None, spec, probe)
            reproduced = sha256_file(probe) == digest
            probe.unlink()
            if not reproduced:
                out.unlink(missing_ok=True)
                stored_bytes += sizes[name]
                continue
            tensors[name] = spec
        if (not taken and not tensors) or stored_bytes > FULL_COPY_FRACTION * full_bytes:
            return whole
        _rewrite(folder, staged, full, taken, tensors, base_ref, chain=_chain_length(base) + 1)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    manifest = build_manifest(folder)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return Stored(manifest["sha256"], sum((folder / n).stat().st_size for n in manifest["files"]), full_bytes, True)


def _rewrite(folder: Path, staged: Path, full: dict[str, Any], taken: list[str], tensors: dict[str, dict],
             base_ref: str, *, chain: int) -> None:
    """Move the whole files into `.composed` (with the full manifest) and lay the stored form beside it."""
    composed = folder / COMPOSED
    composed.mkdir()
    for name in full["files"]:
        (composed / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(folder / name, composed / name)
        if name not in taken and name not in tensors:  # kept whole in the stored form too
            shutil.copy2(composed / name, folder / name)
    os.replace(folder / MANIFEST, composed / MANIFEST)
    for name in tensors:
        delta = staged / (name + DELTA_SUFFIX)
        if delta.exists():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(delta, folder / (name + DELTA_SUFFIX))
    spec = {"base": base_ref, "chain": chain, "full": full, "from_base": taken, "tensors": tensors}
    (folder / DELTA).write_text(json.dumps(spec, indent=2, sort_keys=True))
    for sub in sorted(folder.rglob("*"), reverse=True):  # folders the moves emptied
        if sub.is_dir() and not any(sub.iterdir()) and COMPOSED not in sub.relative_to(folder).parts:
            sub.rmdir()


def compose(folder: Path, locate_base: Callable[[str], Path]) -> Path:
    """The composed (whole, loadable) folder of the stored delta `folder`, built the first time it is
    needed: the stored files are checked against their manifest, the parent's composed folder is found
    by `locate_base(base_ref)` (which composes it in turn), and every composed file is checked against
    the full manifest before the folder moves into place. Raises DeltaIntegrityError on any mismatch
    (nothing is left), FileNotFoundError when the parent is gone."""
    folder = Path(folder)
    composed = folder / COMPOSED
    if (composed / MANIFEST).is_file():
        return composed
    try:
        bad = check_manifest(folder)
    except (OSError, ValueError, KeyError) as exc:
        raise DeltaIntegrityError(f"{folder}: its manifest is unreadable: {exc}") from None
    if bad:
        raise DeltaIntegrityError(f"{bad[0]} of {folder} does not match its manifest")
    spec = read_delta(folder)
    base = locate_base(spec["base"])
    # Beside the folder, not in it: a check of the stored folder meanwhile must not see extra files.
    tmp = folder.with_name(f"{folder.name}.composing-{uuid.uuid4().hex[:8]}")
    try:
        for name, digest in spec["full"]["files"].items():
            dest = tmp / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if name in spec["from_base"]:
                shutil.copy2(base / name, dest)
            elif name in spec["tensors"]:
                delta = folder / (name + DELTA_SUFFIX)
                try:
                    _compose_file(base / name, delta if delta.exists() else None, spec["tensors"][name], dest)
                except (SafetensorError, KeyError) as exc:  # a parent file cut short or without a tensor
                    raise DeltaIntegrityError(f"{name} cannot be composed for {folder} from {base}: {exc}") from None
            else:
                shutil.copy2(folder / name, dest)
            if sha256_file(dest) != digest:
                raise DeltaIntegrityError(f"{name} composed for {folder} does not match the manifest it was "
                                          "registered with (its parent's bytes changed)")
        (tmp / MANIFEST).write_text(json.dumps(spec["full"], indent=2))
        move_into_place(tmp, composed)  # or keep what another process of this host composed meanwhile
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return composed


def materialise(folder: Path, locate_base: Callable[[str], Path]) -> None:
    """Turn the stored delta `folder` back into a folder stored whole (its parent may then be removed):
    the composed files replace the stored ones, and the full manifest is written again. The version's
    `weights_sha256` is unchanged; its `stored_sha256` becomes that same hash."""
    folder = Path(folder)
    composed = compose(folder, locate_base)
    for p in list(folder.iterdir()):
        if p != composed:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    for p in list(composed.iterdir()):
        os.replace(p, folder / p.name)
    composed.rmdir()


def drop_composed(folder: Path) -> int:
    """Remove a stored delta's composed copy (a cache: rebuilt on the next load). Returns the bytes freed."""
    composed = Path(folder) / COMPOSED
    if not composed.is_dir():
        return 0
    freed = sum(p.stat().st_size for p in composed.rglob("*") if p.is_file())
    shutil.rmtree(composed, ignore_errors=True)
    return freed


__all__ = ["DELTA", "FULL_COPY_FRACTION", "MAX_CHAIN", "DeltaIntegrityError", "Stored", "compose",
           "drop_composed", "is_delta", "materialise", "read_delta", "store_delta", "tensor_delta"]
