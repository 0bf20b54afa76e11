"""Artifacts in an object store shared by hosts: S3-compatible (MinIO, Ceph, AWS) or any `fsspec` URL.

Each host keeps a local artifact root that mirrors the store (`unlearn.artifacts` records folders
relative to it). The store holds the same tree: `<url>/<model>/v1/…`, `<url>/<model>/jobs/<job>/…`.

- Publishing is atomic for readers: every file first, the folder's `manifest.json` (every file's
  sha256) last. A folder without its manifest in the store does not exist for any reader.
- Fetching downloads into a temporary folder beside its place, checks every file against the manifest,
  and renames the folder into place only when all match; a mismatch raises `StoreIntegrityError` and
  leaves nothing. The database's `weights_sha256` (the manifest's own hash) is checked by the registry
  (`ensure_intact`) before a version is used, so a manifest replaced in the store is caught as well.
- The local copies are a cache with a size limit (`cache_bytes`): folders fetched from the store are
  evicted least recently used first once the limit is passed (never the one just fetched); the store
  keeps every version. A version kept as a delta (`unlearn.deltas`) is fetched as its delta, and its
  composed copy is built inside its local folder: the limit counts the fetched bytes, not composed copies
  (evicting the folder removes its copy with it).

Source: fsspec (`fsspec.core.url_to_fs`); s3fs for `s3://`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import fsspec

from unlearn.artifacts import MANIFEST, sha256_file
from unlearn.manifests import move_into_place

log = logging.getLogger(__name__)
INDEX = ".store-cache.json"  # folders this host fetched: {relative path: [bytes, last use (unix s)]}


class StoreError(OSError):
    """The store cannot be read or written, or lacks a folder that should be there."""


class StoreIntegrityError(StoreError):
    """A downloaded file does not match the manifest it was published with."""


class ArtifactStore:
    """This host's mirror of the object store at `url`.

    url: `s3://bucket/prefix`, or any fsspec URL (`file:///…`, `memory://…`).
    root: this host's local artifact root. storage_options: passed to the fsspec file system (for S3:
    `endpoint_url`, `key`, `secret`, `client_kwargs`; unset, s3fs reads the usual AWS_* variables).
    cache_bytes: the most bytes of fetched folders kept locally (None: no limit).
    """

    def __init__(self, url: str, root: Path, *, storage_options: dict[str, Any] | None = None,
                 cache_bytes: int | None = None) -> None:
        self.url = url
        self._options = dict(storage_options or {})
        self._fs, base = fsspec.core.url_to_fs(url, **self._options)
        self._pid = os.getpid()
        self.base = base.rstrip("/")
        self.root = Path(root).resolve()
        self.cache_bytes = cache_bytes
        self._lock = threading.Lock()

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The file system, made anew in a forked process (Celery's pool children): s3fs's event loop
        is not fork-safe."""
        if os.getpid() != self._pid:
            self._fs = fsspec.core.url_to_fs(self.url, skip_instance_cache=True, **self._options)[0]
            self._pid = os.getpid()
        return self._fs

    def _rel(self, folder: Path) -> str:
        path = Path(folder).resolve()
        if not path.is_relative_to(self.root):
            raise StoreError(f"{folder} is not under the artifact root {self.root}")
        return path.relative_to(self.root).as_posix()

    def _key(self, rel: str) -> str:
        return f"{self.base}/{rel}"

    def publish(self, folder: Path) -> None:
        """Upload `folder`'s files, then its manifest (which must be written). Raises StoreError."""
        rel = self._rel(folder)
        try:
            manifest = json.loads((Path(folder) / MANIFEST).read_text())
            for name in manifest["files"]:
                self.fs.put_file(str(Path(folder) / name), self._key(f"{rel}/{name}"))
            self.fs.put_file(str(Path(folder) / MANIFEST), self._key(f"{rel}/{MANIFEST}"))
        except (OSError, ValueError, KeyError) as exc:
            raise StoreError(f"cannot publish {rel} to {self.url}: {exc}") from exc
        log.info("published %s to %s", rel, self.url)

    def published(self, folder: Path) -> bool:
        """Whether the store holds `folder` (its manifest is there)."""
        return bool(self.fs.exists(self._key(f"{self._rel(folder)}/{MANIFEST}")))

    def fetch(self, folder: Path) -> None:
        """Make `folder` present under the local root from the store. Raises FileNotFoundError when the
        store has no such folder, `StoreIntegrityError` when a file does not match its manifest."""
        folder = Path(folder)
        rel = self._rel(folder)
        if (folder / MANIFEST).exists():
            self._touch(rel, None)
            return
        try:
            raw = self.fs.cat_file(self._key(f"{rel}/{MANIFEST}"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{rel} is neither on this host nor in the artifact store {self.url}") from None
        manifest = json.loads(raw)
        tmp = folder.with_name(f"{folder.name}.fetch-{uuid.uuid4().hex[:8]}")
        try:
            size = 0
            for name, digest in manifest["files"].items():
                dest = tmp / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(self._key(f"{rel}/{name}"), str(dest))
                if sha256_file(dest) != digest:
                    raise StoreIntegrityError(f"artifact integrity: {rel}/{name} from the store {self.url} does "
                                              "not match its manifest")
                size += dest.stat().st_size
            (tmp / MANIFEST).write_bytes(raw)
            folder.parent.mkdir(parents=True, exist_ok=True)
            move_into_place(tmp, folder)  # or keep what another process of this host fetched meanwhile
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("fetched %s from %s (%d bytes)", rel, self.url, size)
        self._touch(rel, size)

    # ------------------------------------------------------------ the local cache's size limit

    def _read_index(self) -> dict[str, list]:
        try:
            return json.loads((self.root / INDEX).read_text())
        except (OSError, ValueError):
            return {}

    def _touch(self, rel: str, size: int | None) -> None:
        with self._lock:
            index = self._read_index()
            if size is None and rel not in index:
                return  # written on this host, not fetched: not the cache's to evict
            index[rel] = [size if size is not None else index[rel][0], time.time()]
            if self.cache_bytes is not None:
                self._evict(index, keep=rel)
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = self.root / f"{INDEX}.{uuid.uuid4().hex[:8]}"
            tmp.write_text(json.dumps(index))
            os.replace(tmp, self.root / INDEX)

    def _evict(self, index: dict[str, list], *, keep: str) -> None:
        total = sum(size for size, _ in index.values())
        for rel, (size, _) in sorted(index.items(), key=lambda kv: kv[1][1]):
            if total <= self.cache_bytes:
                break
            if rel == keep:
                continue
            shutil.rmtree(self.root / rel, ignore_errors=True)
            del index[rel]
            total -= size
            log.info("evicted %s from the local artifact cache (%d bytes)", rel, size)

    def cached_bytes(self) -> int:
        """Bytes of fetched folders this host keeps now."""
        return sum(size for size, _ in self._read_index().values())


__all__ = ["ArtifactStore", "StoreError", "StoreIntegrityError"]
