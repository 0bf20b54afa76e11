"""sha256 manifests of artifact folders: every file's digest and one hash over them all, and the check
that a folder still matches the manifest written when it was stored.

A folder's `manifest.json` covers every file in it but itself and a composed copy (`COMPOSED`: the
whole folder a version stored as a delta builds, `unlearn.deltas`, which has a manifest of its own).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
COMPOSED = ".composed"  # a version stored as a delta: its whole folder, rebuilt locally (`unlearn.deltas`)


def sha256_file(path: Path) -> str:
    """sha256 hex digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _listed(folder: Path) -> list[str]:
    """The files a folder's manifest covers: all but the manifest and a composed copy (a local cache
    of what the folder's delta builds, checked against a manifest of its own)."""
    return [str(p.relative_to(folder)) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST and COMPOSED not in p.relative_to(folder).parts]


def _total(files: dict[str, str]) -> str:
    return hashlib.sha256("\n".join(f"{k} {v}" for k, v in files.items()).encode()).hexdigest()


def build_manifest(folder: Path) -> dict[str, Any]:
    """sha256 of every file in the folder, and one hash over them all (the version's weights hash)."""
    files = {name: sha256_file(folder / name) for name in _listed(folder)}
    return {"files": files, "sha256": _total(files)}


def manifest_sha256(folder: Path) -> str:
    """The one hash over the files a folder's manifest lists, recomputed from the manifest's entries (not
    from its "sha256" field, which a replaced manifest would carry along). Raises OSError/ValueError."""
    files = json.loads((Path(folder) / MANIFEST).read_text())["files"]
    return _total(files)  # in the order build_manifest wrote them


def stored_size(folder: Path) -> int:
    """Bytes of the files a folder's manifest covers (what is kept for it). Raises OSError."""
    return sum((Path(folder) / name).stat().st_size for name in _listed(Path(folder)))


def write_manifest(folder: Path) -> str:
    manifest = build_manifest(folder)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest["sha256"]


# Digests of files checked before, by (path, inode, size, mtime_ns, ctime_ns): any write to a file changes
# its mtime and ctime (and a replacement its inode), so a hit is the same bytes: the check is never
# skipped, only the hashing. A file stamped within the last RACY_NS is hashed every time: timestamps
# are coarse (a few ms), and a write in the same tick as the hashing would otherwise look unchanged.
_DIGESTS: OrderedDict[tuple, str] = OrderedDict()
_DIGESTS_MAX = 4096
_DIGESTS_LOCK = threading.Lock()
RACY_NS = 2_000_000_000


def move_into_place(tmp: Path, dest: Path) -> None:
    """Rename the finished folder `tmp` (its manifest written last) to `dest`, atomically on one file system.
    When another process of this host put a complete copy there first (its manifest present), theirs is kept
    and `tmp` is left for the caller to remove. Raises OSError otherwise."""
    try:
        os.rename(tmp, dest)
    except OSError:
        if not (dest / MANIFEST).is_file():
            raise


def _stat_key(path: Path) -> tuple:
    st = path.stat()
    return str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _cached_sha256(path: Path) -> str:
    key = _stat_key(path)
    with _DIGESTS_LOCK:
        if key in _DIGESTS:
            _DIGESTS.move_to_end(key)
            return _DIGESTS[key]
    digest = sha256_file(path)
    # Kept only when the file was settled before the hashing began and did not change during it.
    if max(key[3], key[4]) < time.time_ns() - RACY_NS and _stat_key(path) == key:
        with _DIGESTS_LOCK:
            _DIGESTS[key] = digest
            while len(_DIGESTS) > _DIGESTS_MAX:
                _DIGESTS.popitem(last=False)
    return digest


def check_manifest(folder: Path) -> list[str]:
    """The files that no longer match the manifest: changed, missing or added (empty: intact).
    Raises OSError or ValueError when the manifest itself is missing or unreadable."""
    recorded = json.loads((folder / MANIFEST).read_text())["files"]
    present = set(_listed(folder))
    bad = [f for f, h in recorded.items() if f not in present or _cached_sha256(folder / f) != h]
    return bad + sorted(present - set(recorded))
