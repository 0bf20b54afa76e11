"""Reading and writing artifact folders: safetensors for weights, JSON for everything else, a sha256
manifest per folder, and where the folders live when several hosts share them.

Weights are never unpickled: `safetensors` only. `unlearn.json` describes the folder.

Where folders live. Embedded and single-host deployments keep every folder under one local artifact
root and record absolute paths, as they always did. With an object store (`UNLEARN_ARTIFACT_URL`,
`unlearn.objectstore`), each host keeps its own local root as a mirror of the store, so a path written
on one host means nothing on another: folders are recorded relative to the root (`record`), in the
database and in `unlearn.json` (as `@artifacts/<path>`), and each host reads them back under its own root
(`locate`, `read_meta`), fetching a folder from the store the first time it is needed. The mirror is
installed once per process (`use_mirror`), from the settings, by the process's entry point.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file, save_file

from unlearn import deltas
from unlearn.manifests import (  # noqa: F401  (re-exported: artifact folders and their manifests go together)
    COMPOSED,
    MANIFEST,
    build_manifest,
    check_manifest,
    manifest_sha256,
    sha256_file,
    stored_size,
    write_manifest,
)

META = "unlearn.json"
WEIGHTS = "model.safetensors"
ROOT_REF = "@artifacts/"  # how unlearn.json names a folder under the artifact root when a store is in use


class Mirror(Protocol):
    """This host's local copy of the shared object store (`unlearn.objectstore.ArtifactStore`)."""

    root: Path

    def fetch(self, folder: Path) -> None:
        """Make `folder` (under `root`) present locally, from the store, verified against its manifest."""

    def publish(self, folder: Path) -> None:
        """Upload `folder` (under `root`, manifest written) to the store, its manifest last."""


_MIRROR: Mirror | None = None


class NoStoreConfigured(RuntimeError):
    """A folder recorded relative to an artifact store, read by a process that has no store configured:
    a deployment's settings are wrong (not the artifact), so nothing may be quarantined for it."""


def use_mirror(mirror: Mirror | None) -> None:
    """Install (or, with None, remove) this process's store mirror."""
    global _MIRROR
    _MIRROR = mirror


def record(folder: Path | str) -> str:
    """How a folder is written down (database rows, unlearn.json): relative to the artifact root when a
    store is in use and the folder lies under the root, else its absolute path."""
    path = Path(folder).resolve()
    if _MIRROR is not None and path.is_relative_to(_MIRROR.root.resolve()):
        return path.relative_to(_MIRROR.root.resolve()).as_posix()
    return str(path)


def locate(recorded: str | Path) -> Path:
    """The local, loadable folder of a recorded path (`record`'s inverse), fetched from the store when
    this host does not have it yet; for a version stored as a delta, its composed folder
    (`unlearn.deltas.compose`, along the chain of parents). Raises `NoStoreConfigured` for a relative path
    when no store is in use, FileNotFoundError when neither this host nor the store has the folder (or a
    parent it needs), and `unlearn.deltas.DeltaIntegrityError` when a delta or a parent is corrupt."""
    path = locate_stored(recorded)
    return deltas.compose(path, locate) if deltas.is_delta(path) else path


def locate_stored(recorded: str | Path) -> Path:
    """The local folder of a recorded path as stored (for a delta: the delta, not the composed folder),
    fetched from the store when this host does not have it yet. Raises as `locate` does, bar deltas."""
    text = str(recorded).removeprefix(ROOT_REF)
    path = Path(text)
    if not path.is_absolute():
        if _MIRROR is None:
            raise NoStoreConfigured(f"{recorded} is relative to an artifact store, and this process has none "
                                    "(set UNLEARN_ARTIFACT_URL)")
        path = _MIRROR.root / path
    if _MIRROR is not None and not path.exists() and path.resolve().is_relative_to(_MIRROR.root.resolve()):
        _MIRROR.fetch(path)
    return path


def _to_refs(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_refs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_refs(v) for v in value]
    if isinstance(value, str) and value.startswith("/") and _MIRROR is not None:
        rel = record(value)
        return ROOT_REF + rel if not rel.startswith("/") else value
    return value


def _from_refs(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _from_refs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_refs(v) for v in value]
    if isinstance(value, str) and value.startswith(ROOT_REF):
        try:
            return str(locate(value))
        except (FileNotFoundError, NoStoreConfigured):  # whoever needs the folder says so, with its name
            return str((_MIRROR.root if _MIRROR is not None else Path(".")) / value.removeprefix(ROOT_REF))
    return value


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """Write `unlearn.json`; with a store in use, paths under the artifact root are written relative to it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / META).write_text(json.dumps(_to_refs(meta), indent=2, sort_keys=True))


def read_meta(folder: Path) -> dict[str, Any]:
    """`unlearn.json` of `folder`, with every recorded folder path made local (`locate`).
    Raises FileNotFoundError when the folder has none."""
    path = Path(folder) / META
    if not path.exists():
        raise FileNotFoundError(f"{folder} is not an unlearn artifact folder (no {META})")
    return _from_refs(json.loads(path.read_text()))


def save_tensors(folder: Path, tensors: dict[str, torch.Tensor], name: str = WEIGHTS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(folder / name))


def load_tensors(folder: Path, name: str = WEIGHTS, device: str = "cpu") -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / name), device=device)


def publish(folder: Path) -> None:
    """Send a folder whose manifest is written to the store, when one is in use (else nothing to do)."""
    if _MIRROR is not None:
        _MIRROR.publish(Path(folder))
