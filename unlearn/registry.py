"""The model registry: versions as artifact folders with sha256 manifests, lineage, aliases
(`champion` is what serving reads) and the taint rule.

Taint rule: once a version that excludes forgotten samples is promoted, every version of that model
still holding any of them is tainted, whatever became of the requests that asked (one model of a
request may promote while another fails); so is every version holding samples of a completed
request. A tainted version is never served, promoted or rolled back to again.

Integrity rule: an artifact is checked against its manifest every time it is about to be used (a job's
base, a cached reference, a rollback or promotion target, a champion under a compliance check). A
version whose files no longer match is quarantined and never used again.

Storage: a candidate is stored as what it changed against its parent where that saves bytes
(`unlearn.deltas`). Such a version is intact only when its stored files, every ancestor its delta
composes from, and its composed folder all match their manifests: a corrupt parent quarantines the
parent and every child checked after it. `weights_sha256` is the composed (whole) folder's manifest hash,
as for a version stored whole; `stored_sha256` the hash of what is kept. No registry call deletes a
registered version's folder, so a parent a delta needs is never removed by the service; before removing
one by hand, `materialise_version` each child whose delta names it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from unlearn.artifacts import (  # noqa: F401  (the manifest helpers are part of the registry's interface)
    MANIFEST,
    build_manifest,
    check_manifest,
    locate,
    locate_stored,
    manifest_sha256,
    publish,
    record,
    stored_size,
    write_manifest,
)
from unlearn.contracts import SampleRecord, Scope
from unlearn.deltas import DeltaIntegrityError, is_delta, materialise, read_delta, store_delta
from unlearn.families import get_family
from unlearn.identity import hash_subject, sha256_ids, valid_model_name
from unlearn.objectstore import StoreIntegrityError
from unlearn.store.bulk import insert_training_records
from unlearn.store.db import id_chunks
from unlearn.store.models import (
    Alias,
    AuditEvent,
    DeletionRequest,
    Model,
    ModelVersion,
    RequestTarget,
    utcnow,
)
from unlearn.store.states import RequestStatus, VersionStatus
from unlearn.store.transitions import Conflict, audit, move_version

CHAMPION = "champion"


class RegistryError(ValueError):
    pass


class TaintedVersion(RegistryError):
    pass


class UnknownVersion(RegistryError):
    """A version id that is not one of the named model's versions."""


class ArtifactIntegrityError(RegistryError):
    """An artifact's files do not match the manifest written when it was stored: it must not be used.
    `version_id` names the registered version it belongs to (None for a cache folder such as a reference)."""

    def __init__(self, message: str, *, version_id: str | None = None) -> None:
        super().__init__(message)
        self.version_id = version_id


def verify_artifact(folder: Path, label: str, *, version_id: str | None = None) -> None:
    """Raise `ArtifactIntegrityError` unless every file of `folder` matches its manifest; `label` names
    the artifact in the message ("version 3 (id)", "reference …")."""
    try:
        bad = check_manifest(folder)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # missing, unreadable or malformed
        bad = [MANIFEST]
    if bad:
        raise ArtifactIntegrityError(f"artifact integrity: {bad[0]} of {label} does not match its manifest",
                                     version_id=version_id)


def version_label(version: ModelVersion) -> str:
    return f"version {version.version} ({version.id})"


def quarantine(session: Session, version: ModelVersion, *, reason: str, actor: str) -> bool:
    """Take a version whose files do not match its manifest out of use for good: status `quarantined`,
    with an audit event that is also the operator's alert (besides `unlearn_versions_quarantined`).
    False when it already was. The alias is left alone: which version serves next is an operator's rollback."""
    if version.status == VersionStatus.QUARANTINED:
        return False
    try:
        move_version(session, version, VersionStatus.QUARANTINED,
                     frm=[s for s in VersionStatus if s != VersionStatus.QUARANTINED])
    except Conflict:  # moved meanwhile: only a concurrent quarantine makes this one redundant
        session.refresh(version)
        if version.status == VersionStatus.QUARANTINED:
            return False
        raise
    audit(session, actor=actor, entity_type="version", entity_id=version.id, to_state=VersionStatus.QUARANTINED,
          reason=reason[:500], data={"model": version.model_name, "version": version.version})
    return True


def ensure_intact(session: Session, version: ModelVersion, *, actor: str) -> None:
    """Refuse a quarantined version, and check any other's files against its manifest. A mismatch
    quarantines the version in `session` and raises `ArtifactIntegrityError`: a caller that refuses
    the work still commits the session, so that the quarantine stands. A version stored as a delta is
    checked along its chain: its stored files (against `stored_sha256`), its parent (`ensure_intact`,
    which quarantines a corrupt parent), then its composed folder (against `weights_sha256`)."""
    label = version_label(version)
    if version.status == VersionStatus.QUARANTINED:
        raise ArtifactIntegrityError(f"artifact integrity: {label} is quarantined: its files did not match "
                                     "its manifest", version_id=version.id)
    try:
        stored = locate_stored(version.artifact_path)  # fetched from the store when this host lacks it
        _check_folder(stored, label, version.stored_sha256 or version.weights_sha256, version_id=version.id)
        if is_delta(stored):
            _check_base(session, version, stored, actor=actor)
            _check_folder(locate(version.artifact_path), label, version.weights_sha256, version_id=version.id)
    except (FileNotFoundError, StoreIntegrityError, DeltaIntegrityError) as exc:  # gone or changed in the store
        exc = ArtifactIntegrityError(f"artifact integrity: {label}: {exc}", version_id=version.id)
        quarantine(session, version, reason=str(exc), actor=actor)
        raise exc from None
    except ArtifactIntegrityError as exc:
        quarantine(session, version, reason=str(exc), actor=actor)
        raise


def _check_folder(folder: Path, label: str, sha256: str, *, version_id: str) -> None:
    """Every file of `folder` matches its manifest, and the manifest is the one registered (`sha256`)."""
    verify_artifact(folder, label, version_id=version_id)
    if manifest_sha256(folder) != sha256:  # the manifest itself was replaced
        raise ArtifactIntegrityError(f"artifact integrity: the manifest of {label} is not the one it was "
                                     "registered with", version_id=version_id)


def _check_base(session: Session, version: ModelVersion, stored: Path, *, actor: str) -> None:
    """The parent a delta composes from is the version's registered parent, and intact."""
    parent = session.get(ModelVersion, version.parent_id) if version.parent_id else None
    if parent is None or read_delta(stored).get("base") != parent.artifact_path:
        raise ArtifactIntegrityError(f"artifact integrity: the delta of {version_label(version)} names a base "
                                     "that is not its registered parent", version_id=version.id)
    try:
        ensure_intact(session, parent, actor=actor)
    except ArtifactIntegrityError as exc:
        raise ArtifactIntegrityError(f"artifact integrity: {version_label(version)} is stored as a delta "
                                     f"against {version_label(parent)}, which is corrupt ({exc})",
                                     version_id=version.id) from None


def materialise_version(session: Session, version: ModelVersion, *, actor: str) -> None:
    """Keep a version stored as a delta whole from now on (so that its parents' folders may go): checked
    first (`ensure_intact`), its composed folder replaces the delta, the stored hash and size follow, and
    the folder is published again. Nothing to do for a version kept whole. Raises ArtifactIntegrityError."""
    ensure_intact(session, version, actor=actor)
    stored = locate_stored(version.artifact_path)
    if not is_delta(stored):
        return
    materialise(stored, locate)
    version.stored_sha256, version.stored_bytes = manifest_sha256(stored), stored_size(stored)
    publish(stored)
    session.add(version)
    audit(session, actor=actor, entity_type="version", entity_id=version.id, to_state="stored-whole",
          reason="materialised: no longer depends on its parent's folder",
          data={"model": version.model_name, "version": version.version, "stored_bytes": version.stored_bytes})


def artifact_dir(root: Path, model_name: str, *parts: str) -> Path:
    if not valid_model_name(model_name):
        raise RegistryError(f"invalid model name {model_name!r}")
    base = Path(root).resolve()
    path = base.joinpath(model_name, *parts).resolve()
    if not path.is_relative_to(base):
        raise RegistryError("artifact path escapes the artifact root")
    return path


# ---------------------------------------------------------------- models and versions

def import_model(session: Session, *, name: str, family: str, source_dir: Path, artifact_root: Path,
                 salt: str, description: str = "", thresholds: dict | None = None,
                 actor: str = "system") -> ModelVersion:
    """Register a trained model: version 1, its training records, and the champion alias."""
    if not valid_model_name(name):
        raise RegistryError(f"invalid model name {name!r}: use lowercase letters, digits, '.', '_', '-'")
    if session.get(Model, name) is not None:
        raise RegistryError(f"model {name!r} is already registered")
    fam = get_family(family)
    dest = artifact_dir(artifact_root, name, "v1")
    # Staged beside its place and read before it moves there: a folder the family cannot read is refused
    # with nothing left behind (a team's model goes through `unlearn.registration`, which checks more).
    staged = dest.with_name(f"v1.staging-{time.time_ns()}")
    try:
        shutil.copytree(source_dir, staged)
        samples = fam.samples(staged)
        if dest.exists():
            shutil.rmtree(dest)
        staged.rename(dest)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    sha = write_manifest(dest)
    publish(dest)  # in the store before the row that names it commits
    session.add(Model(name=name, family=family, description=description, thresholds=thresholds or {}))
    session.flush()
    insert_training_records(session, name, (  # one COPY (PostgreSQL) or executemany (SQLite), not an object a row
        SampleRecord(sample_id=r.sample_id, label=r.label, split=r.split, caption=r.caption,
                     subject_hash=r.subject_hash or (hash_subject(r.subject, salt) if r.subject else None))
        for r in samples))
    version = ModelVersion(model_name=name, version=1, family=family, method="train", artifact_path=record(dest),
                           weights_sha256=sha, stored_sha256=sha, stored_bytes=stored_size(dest),
                           status=VersionStatus.PROMOTED, verdict=None, params_hash="",
                           forget_hash=sha256_ids([]))
    session.add(version)
    session.flush()
    session.add(Alias(model_name=name, alias=CHAMPION, version_id=version.id))
    audit(session, actor=actor, entity_type="alias", entity_id=f"{name}@{CHAMPION}", to_state=version.id,
          reason="model imported")
    return version


def champion(session: Session, model_name: str) -> ModelVersion:
    alias = session.get(Alias, (model_name, CHAMPION))
    if alias is None:
        raise RegistryError(f"model {model_name!r} has no champion")
    return session.get(ModelVersion, alias.version_id)


def resolve_method(session: Session, model_name: str, method: str, scope: Scope) -> str:
    """`method`, or for "auto" the method the model's family picks for its champion and `scope`.
    Raises RegistryError when the model has no champion."""
    if method != "auto":
        return method
    base = champion(session, model_name)
    return get_family(base.family).auto_method(locate(base.artifact_path), scope)


def params_hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def register_version(session: Session, *, parent: ModelVersion, method: str, params: dict, folder: Path,
                     forget_ids: list[str], request_ids: list[str], job_id: str, method_info: dict,
                     verdict: dict) -> ModelVersion:
    """Register a candidate; a second call for the same lineage step returns the first row."""
    forget_hash, p_hash = sha256_ids(forget_ids), params_hash(params)
    existing = session.exec(select(ModelVersion).where(
        ModelVersion.parent_id == parent.id, ModelVersion.forget_hash == forget_hash,
        ModelVersion.method == method, ModelVersion.params_hash == p_hash)).first()
    if existing is not None:
        return existing
    sha = write_manifest(folder)  # the whole folder's: the version's weights hash, however it is stored
    stored = store_delta(folder, base=locate(parent.artifact_path), base_ref=parent.artifact_path)
    publish(folder)  # in the store before the row that names it commits (for a delta, the delta alone)
    next_version = (session.exec(select(func.max(ModelVersion.version))
                                 .where(ModelVersion.model_name == parent.model_name)).one() or 0) + 1
    version = ModelVersion(
        model_name=parent.model_name, version=next_version, family=parent.family, parent_id=parent.id,
        method=method, params=params, params_hash=p_hash, forget_hash=forget_hash,
        excluded_ids=sorted(set(parent.excluded_ids) | set(forget_ids)), request_ids=request_ids,
        artifact_path=record(folder), weights_sha256=sha, stored_sha256=stored.sha256, stored_bytes=stored.bytes,
        verdict=verdict["verdict"], metrics=verdict,
        method_info=method_info, status=VersionStatus.CANDIDATE, job_id=job_id)
    try:
        with session.begin_nested():
            session.add(version)
    except IntegrityError:  # a concurrent delivery registered it first
        return session.exec(select(ModelVersion).where(
            ModelVersion.parent_id == parent.id, ModelVersion.forget_hash == forget_hash,
            ModelVersion.method == method, ModelVersion.params_hash == p_hash)).one()
    audit(session, actor="worker", entity_type="version", entity_id=version.id, to_state=VersionStatus.CANDIDATE,
          data={"model": parent.model_name, "version": next_version, "verdict": verdict["verdict"]})
    return version


def request_job_ids(session: Session, request_id: str) -> list[str]:
    """Every job that worked on the request: its targets' present jobs, and earlier ones an operator's retry
    replaced (the coalescer names a job in the request's audit event when it queues the request, `job`;
    an operator's retry names the jobs it leaves behind, `jobs`)."""
    return requests_job_ids(session, [request_id])[request_id]


def requests_job_ids(session: Session, request_ids: list[str]) -> dict[str, list[str]]:
    """`request_job_ids` for many requests at once, `id_chunks` to a query: request id → its job ids, sorted."""
    ids: dict[str, set[str]] = {rid: set() for rid in request_ids}
    for chunk in id_chunks(request_ids):
        for rid, job_id in session.exec(select(RequestTarget.request_id, RequestTarget.job_id).where(
                col(RequestTarget.request_id).in_(chunk), col(RequestTarget.job_id).is_not(None))).all():
            ids[rid].add(job_id)
        for rid, data in session.exec(select(AuditEvent.entity_id, AuditEvent.data).where(
                AuditEvent.entity_type == "request", col(AuditEvent.entity_id).in_(chunk))).all():
            if isinstance(data, dict):
                named = [data.get("job"), *(data.get("jobs") or [])]
                ids[rid].update(j for j in named if isinstance(j, str))
    return {rid: sorted(v) for rid, v in ids.items()}


def job_attempts(session: Session, job_ids: list[str]) -> list[dict[str, Any]]:
    """Every candidate these jobs made, oldest first, as the audit trail, the dashboard and the certificate
    show it: method, the version it became (promoted or rejected), its verdict and reasons, the wall seconds
    it cost (unlearning and verifying; `unlearn_seconds`: the method alone), the device, and any warning
    its step carries. Versions registered before attempts were recorded have no wall time (None)."""
    if not job_ids:
        return []
    rows = session.exec(select(ModelVersion).where(col(ModelVersion.job_id).in_(job_ids))
                        .order_by(col(ModelVersion.created_at), col(ModelVersion.version))).all()
    return [{"job_id": v.job_id, "model": v.model_name, "method": v.method, "version_id": v.id, "version": v.version,
             "status": v.status, "verdict": (v.metrics or {}).get("verdict") or v.verdict,
             "reasons": list((v.metrics or {}).get("reasons") or []),
             "wall_seconds": (v.method_info or {}).get("wall_seconds"),
             "unlearn_seconds": (v.method_info or {}).get("seconds"),
             "device": (v.method_info or {}).get("device"),
             **({"warning": v.method_info["warning"]} if (v.method_info or {}).get("warning") else {})}
            for v in rows]


def completed_forget_ids(session: Session, model_name: str) -> set[str]:
    """Every sample a completed deletion request removed from this model."""
    rows = session.exec(select(RequestTarget.forget_ids).join(
        DeletionRequest, DeletionRequest.id == RequestTarget.request_id).where(
        RequestTarget.model_name == model_name, DeletionRequest.status == RequestStatus.COMPLETED)).all()
    return {s for ids in rows for s in ids}


def forgotten_ids(session: Session, model_name: str) -> set[str]:
    """Every sample no version of this model may hold any more: those of completed requests, and every
    sample the champion's lineage forgot (its request may have failed on another model, or be running)."""
    alias = session.get(Alias, (model_name, CHAMPION))
    current = session.get(ModelVersion, alias.version_id) if alias is not None else None
    return completed_forget_ids(session, model_name) | set(current.excluded_ids if current else ())


def is_tainted(session: Session, version: ModelVersion) -> bool:
    # Read from the rows, not only the flag, so that a version left untainted by an older release
    # (before the champion's exclusions counted) is still refused.
    return version.tainted or not forgotten_ids(session, version.model_name) <= set(version.excluded_ids)


def taint_stale_versions(session: Session, model_name: str, *, actor: str) -> list[str]:
    """Mark (and retire) every version that still holds a forgotten sample (`forgotten_ids`); run in the
    transaction that promotes a version, after the alias moved."""
    gone = forgotten_ids(session, model_name)
    newly = []
    for v in session.exec(select(ModelVersion).where(ModelVersion.model_name == model_name,
                                                     ModelVersion.tainted == False)).all():  # noqa: E712
        if not gone <= set(v.excluded_ids):
            v.tainted = True
            session.add(v)
            if v.status in (VersionStatus.PROMOTED, VersionStatus.CANDIDATE):
                move_version(session, v, VersionStatus.RETIRED, frm=[VersionStatus.PROMOTED, VersionStatus.CANDIDATE])
            audit(session, actor=actor, entity_type="version", entity_id=v.id, to_state="tainted",
                  reason="holds samples the champion forgot or a completed deletion request removed")
            newly.append(v.id)
    return newly


def move_alias(session: Session, model_name: str, to_version: ModelVersion, *, expected: str | None,
               actor: str, reason: str, alias: str = CHAMPION, fresh_manifest: bool = False) -> bool:
    """Compare-and-swap an alias; False when it no longer points at `expected`. A tainted version is
    refused, and so is one that is quarantined or whose files do not match its manifest (`ensure_intact`:
    it is quarantined in `session`). `fresh_manifest`: the version's manifest was written from these
    very files in this transaction (a candidate just registered), so there is nothing to re-check."""
    if is_tainted(session, to_version):
        raise TaintedVersion(f"version {to_version.id} of {model_name} is tainted: it still holds "
                             "data this model has forgotten")
    if not fresh_manifest:
        ensure_intact(session, to_version, actor=actor)
    stmt = update(Alias).where(Alias.model_name == model_name, Alias.alias == alias)
    if expected is not None:
        stmt = stmt.where(Alias.version_id == expected)
    moved = session.execute(stmt.values(version_id=to_version.id, updated_at=utcnow())).rowcount == 1
    if moved:
        audit(session, actor=actor, entity_type="alias", entity_id=f"{model_name}@{alias}",
              from_state=expected, to_state=to_version.id, reason=reason)
    return moved


def rollback(session: Session, model_name: str, version_id: str, *, actor: str, reason: str) -> ModelVersion:
    """Make `version_id` the champion. Raises `Conflict` when the champion moved between reading it and
    moving it (another rollback or a promotion won): nothing is changed, the caller retries on the new one.
    Raises `ArtifactIntegrityError` for a corrupt target after quarantining it in `session` (commit it)."""
    target = session.get(ModelVersion, version_id)
    if target is None or target.model_name != model_name:
        raise UnknownVersion(f"model {model_name!r} has no version {version_id!r}")
    if target.status == VersionStatus.REJECTED:
        raise RegistryError(f"version {version_id} was rejected by the verifier")
    current = champion(session, model_name)
    if not move_alias(session, model_name, target, expected=current.id, actor=actor, reason=f"rollback: {reason}"):
        raise Conflict(f"the champion of {model_name} changed meanwhile (it is no longer version "
                       f"{current.version}): retry")
    if current.id != target.id and current.status == VersionStatus.PROMOTED:
        move_version(session, current, VersionStatus.RETIRED, frm=[VersionStatus.PROMOTED])
    move_version(session, target, VersionStatus.PROMOTED, frm=[VersionStatus.RETIRED, VersionStatus.CANDIDATE])
    return target
