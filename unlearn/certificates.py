"""Deletion certificates: a signed record of what was forgotten, where, how, and how it was checked.

A certificate is issued in the transaction that completes its request. Its body is signed with
the service's Ed25519 key over its RFC 8785 canonical JSON (JCS: keys sorted by UTF-16 code units,
numbers written as ECMAScript writes them, UTF-8), so anyone holding the public key (`GET /v1/keys`)
can check it offline, in any language: `unlearn verify-certificate FILE`, or a few lines of
JavaScript (`tests/verify_certificate.mjs`).

The body's `format` says which canonical form was signed: 2 is JCS; 1 (certificates issued before)
is Python's `json.dumps` with sorted keys, which writes floats its own way (`1.0`, `1e-09`), and is
still checked that way so that every certificate already handed out stays valid.

The document handed out is `{"certificate": body, "algorithm": "Ed25519", "key_id": …,
"signature": base64}`; the key id (sha256 of the public key's DER) is also inside the signed
body, so a certificate cannot be passed off as signed by another key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlmodel import Session, col, select

import unlearn
from unlearn.identity import sha256_ids
from unlearn.methods import get_method, method_names
from unlearn.registry import job_attempts, requests_job_ids
from unlearn.settings import Settings
from unlearn.store.db import id_chunks
from unlearn.store.models import (
    AuditEvent,
    Certificate,
    DeletionRequest,
    Model,
    ModelVersion,
    RequestTarget,
    UnlearningJob,
    utcnow,
)
from unlearn.store.states import RequestStatus, TargetStatus
from unlearn.store.transitions import audit_many

ALGORITHM = "Ed25519"
CERTIFICATE_TYPE = "unlearn/deletion-certificate"
FORMAT = 2
# JSON numbers are IEEE doubles to most readers (JavaScript's included): beyond this an integer would
# not survive a round trip, and JCS refuses it.
MAX_SAFE_INTEGER = 2**53 - 1


# ---------------------------------------------------------------- keys

def load_signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The service's private key; generated on first use (0600), never overwritten.

    Several processes may start at once: the key is written to a private temporary file and
    hard-linked into place, so exactly one of them wins and the others load its key."""
    path = settings.resolved_signing_key_path
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


def public_key_pem(settings: Settings) -> str:
    return load_signing_key(settings).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def key_id(public_pem: str | bytes) -> str:
    """sha256 (hex) of the public key's DER encoding: the same for any PEM spelling of it."""
    key = _load_public(public_pem)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _load_public(public_pem: str | bytes) -> Ed25519PublicKey:
    raw = public_pem.encode() if isinstance(public_pem, str) else public_pem
    key = serialization.load_pem_public_key(raw)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


# ---------------------------------------------------------------- signing and checking

def canonical_json(obj: Any) -> bytes:
    """RFC 8785 (JSON Canonicalization Scheme): the bytes a format-2 certificate signs."""
    return rfc8785.dumps(obj)


def canonical_json_v1(obj: Any) -> bytes:
    """The bytes a format-1 certificate signed; kept only to check those."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


CANONICAL_FORMS: dict[int, Callable[[Any], bytes]] = {1: canonical_json_v1, FORMAT: canonical_json}


def sign(body: dict[str, Any], private_key: Ed25519PrivateKey) -> str:
    return base64.b64encode(private_key.sign(CANONICAL_FORMS[body["format"]](body))).decode()


def document(row: Certificate) -> dict[str, Any]:
    """The certificate as handed out: body, algorithm, key id and signature."""
    return {"certificate": row.body, "algorithm": ALGORITHM, "key_id": row.key_id, "signature": row.signature}


def check_certificate(doc: Any, public_key_pem: str | bytes) -> str | None:
    """Why `doc` is not a valid certificate under this public key, or None when it is."""
    if not isinstance(doc, dict) or not isinstance(doc.get("certificate"), dict):
        return "not a certificate document (no 'certificate' object)"
    if doc.get("algorithm") != ALGORITHM:
        return f"algorithm must be {ALGORITHM}"
    body = doc["certificate"]
    if body.get("type") != CERTIFICATE_TYPE:
        return f"certificate type must be {CERTIFICATE_TYPE}"
    fmt = body.get("format")
    canonical = CANONICAL_FORMS.get(fmt) if type(fmt) is int else None
    if canonical is None:
        return f"unknown certificate format {fmt!r} (known: {', '.join(map(str, sorted(CANONICAL_FORMS)))})"
    try:
        public = _load_public(public_key_pem)
        kid = key_id(public_key_pem)
    except ValueError as exc:
        return f"unusable public key: {exc}"
    if doc.get("key_id") != kid or body.get("issuer", {}).get("key_id") != kid:
        return f"signed with another key (this public key's id is {kid[:16]}…)"
    try:
        signature = base64.b64decode(str(doc.get("signature", "")), validate=True)
        public.verify(signature, canonical(body))
    except (InvalidSignature, ValueError):  # ValueError: bad base64, or an edit JCS cannot write (2**60)
        return "the signature does not match the certificate's content"
    return None


def verify_certificate(doc: Any, public_key_pem: str | bytes) -> bool:
    return check_certificate(doc, public_key_pem) is None


# ---------------------------------------------------------------- issuing

def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def _finite(obj: Any) -> Any:
    """JSON has no NaN or infinity: such metric values are recorded as null. An integer beyond what an
    IEEE double holds exactly is recorded as its decimal string, which every reader keeps intact."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, int) and not isinstance(obj, bool) and abs(obj) > MAX_SAFE_INTEGER:
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


_Row = TypeVar("_Row", Model, UnlearningJob, ModelVersion)


class _Batch:
    """What the certificates issued in one transaction share, read once: each model's tainted versions,
    each request's jobs, each set of jobs' attempts, and the requests' finished targets. A burst's job
    completes thousands of requests at once, and each would otherwise read all of these again.
    `until`: the issue time; taint events after it are not part of the certificates."""

    def __init__(self, session: Session, request_ids: list[str], until: datetime) -> None:
        self.session, self.until = session, until
        self.job_ids = requests_job_ids(session, request_ids)
        self.targets: dict[str, list[RequestTarget]] = {rid: [] for rid in request_ids}
        for chunk in id_chunks(request_ids):
            for t in session.exec(select(RequestTarget).where(
                    col(RequestTarget.request_id).in_(chunk),
                    RequestTarget.status == TargetStatus.DONE).order_by(RequestTarget.model_name)).all():
                self.targets[t.request_id].append(t)
        self._tainted: dict[str, list[ModelVersion]] = {}
        self._attempts: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        self._rows: dict[tuple[type, str], Any] = {}

    def row(self, cls: type[_Row], key: str | None) -> _Row | None:
        """`session.get`, held for the batch: the session's identity map keeps a row only while something
        refers to it, and every reload would first flush the certificates added so far."""
        if key is None:
            return None
        if (cls, key) not in self._rows:
            self._rows[cls, key] = self.session.get(cls, key)
        return self._rows[cls, key]

    def tainted(self, model_name: str, forget_ids: set[str]) -> list[dict[str, Any]]:
        """The model's versions marked tainted up to `until`, and whether each held these samples."""
        if model_name not in self._tainted:
            versions = {v.id: v for v in self.session.exec(
                select(ModelVersion).where(ModelVersion.model_name == model_name))}
            events = self.session.exec(select(AuditEvent).where(
                AuditEvent.entity_type == "version", AuditEvent.to_state == "tainted",
                col(AuditEvent.entity_id).in_(list(versions)), AuditEvent.at <= self.until)
                .order_by(AuditEvent.at)).all()
            first: dict[str, tuple[ModelVersion, datetime]] = {}
            for e in events:
                first.setdefault(e.entity_id, (versions[e.entity_id], e.at))
            self._tainted[model_name] = list(first.values())
        return [{"id": v.id, "version": v.version, "weights_sha256": v.weights_sha256, "status": v.status,
                 "tainted_at": _ts(at), "held_request_data": not forget_ids <= set(v.excluded_ids)}
                for v, at in self._tainted[model_name]]

    def attempts(self, request_id: str) -> list[dict[str, Any]]:
        """Every candidate the request's jobs made (`registry.job_attempts`)."""
        key = tuple(self.job_ids.get(request_id, []))
        if key not in self._attempts:
            self._attempts[key] = job_attempts(self.session, list(key))
        return self._attempts[key]


def _model_entry(session: Session, request: DeletionRequest, target: RequestTarget, batch: _Batch) -> dict[str, Any]:
    model = batch.row(Model, target.model_name)
    job = batch.row(UnlearningJob, target.job_id)
    version = batch.row(ModelVersion, target.version_id)
    method = job.method if job else (version.method if version else request.method)
    metrics = version.metrics if version is not None else {}
    criteria = metrics.get("criteria") or {}
    # A candidate that is its own reference compared equal to itself: no table is offered as evidence.
    by_construction = bool(metrics.get("exact_by_construction"))
    evidence = {} if by_construction else criteria
    forget = set(target.forget_ids)
    entry: dict[str, Any] = {
        "model": target.model_name,
        "family": model.family if model else None,
        "method": method,
        "method_exact": get_method(method).exact if method in method_names() else None,
        "job_id": target.job_id,
        "forgotten_samples": len(forget),
        "forget_ids_sha256": sha256_ids(forget),
        "new_version": None if version is None else {
            "id": version.id, "version": version.version, "parent_id": version.parent_id,
            "method": version.method, "weights_sha256": version.weights_sha256, "created_at": _ts(version.created_at),
            # a version made for other requests already excluded these samples
            "made_for_this_request": request.id in version.request_ids,
        },
        "verifier": {
            "verdict": metrics.get("verdict"),
            # what the candidate was compared with: the exact retrain, a precomputed reference, or the
            # holdout records and the original model (None: verified before policies were recorded)
            "reference_policy": metrics.get("reference_policy"),
            "exact_by_construction": by_construction,
            **({"note": metrics.get("note")} if by_construction else {}),
            # where the forget set was never memorised beyond retrains' seed-to-seed spread, the membership
            # test had no power: the statement, its statistic, and what certified the request (the method's
            # exactness, or nothing)
            **({"indistinguishable_before_unlearning": metrics["indistinguishable"]}
               if metrics.get("indistinguishable") else {}),
            "criteria": evidence,  # each: value, op, threshold, passed, retrain reference
            "thresholds": {name: {"op": c.get("op"), "threshold": c.get("threshold")} for name, c in evidence.items()},
            "reasons": metrics.get("reasons", []),
            # the gates set for this deployment or model over the verifier's own defaults, as they
            # stood when this version was verified (None: verified before they were recorded)
            "gate_overrides": metrics.get("gate_overrides", None if criteria else {}),
        },
        "tainted_versions_retired": batch.tainted(target.model_name, forget),
        # every candidate the job's chain of methods made before this one passed (or this one alone):
        # method, version, verdict and reasons, wall seconds and device
        "attempts": [a for a in batch.attempts(request.id) if a["model"] == target.model_name],
    }
    if metrics.get("warning"):  # a caveat of the method's step, e.g. a retrain that may keep a backdoor
        entry["warning"] = metrics["warning"]
    return entry


def certificate_body(session: Session, settings: Settings, request: DeletionRequest, *, kid: str,
                     issued_at: datetime, batch: _Batch | None = None) -> dict[str, Any]:
    """The unsigned body of `request`'s certificate as of `issued_at`: the request, and for each model it
    was served on, the method, the new version, the verifier's evidence, the tainted versions retired
    and every attempt. `batch`: what the other certificates of this transaction already read."""
    batch = batch or _Batch(session, [request.id], issued_at)
    targets = batch.targets[request.id]
    body = {
        "type": CERTIFICATE_TYPE,
        "format": FORMAT,
        "issuer": {"service": "unlearn", "version": unlearn.__version__, "key_id": kid},
        "request": {
            "id": request.id, "tenant": request.tenant, "external_id": request.external_id,
            "subject_hash": request.subject_hash,  # the salted HMAC; the raw reference is never stored
            "kind": request.kind, "scope_type": request.scope_type, "scope": request.scope,
            "method_requested": request.method,
            "received_at": _ts(request.received_at), "due_at": _ts(request.due_at),
            "completed_at": _ts(request.completed_at),
        },
        "models": [_model_entry(session, request, t, batch) for t in targets],
        "issued_at": _ts(issued_at),
    }
    return _finite(body)


def issue_certificates(session: Session, settings: Settings, request_ids: list[str]) -> list[Certificate]:
    """Sign and store a certificate for each completed request (a reopened and re-completed
    request gets a fresh one). Runs inside the caller's transaction."""
    if not request_ids:
        return []
    key = load_signing_key(settings)
    kid = key_id(key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo))
    session.flush()  # the completion and taint rows written so far in this transaction
    ids = sorted(set(request_ids))
    requests = {r.id: r for chunk in id_chunks(ids) for r in session.exec(
        select(DeletionRequest).where(col(DeletionRequest.id).in_(chunk),
                                      DeletionRequest.status == RequestStatus.COMPLETED)).all()}
    ids = [rid for rid in ids if rid in requests]
    rows = {c.request_id: c for chunk in id_chunks(ids) for c in session.exec(
        select(Certificate).where(col(Certificate.request_id).in_(chunk))).all()}
    now = utcnow()  # one transaction, one issue time
    batch = _Batch(session, ids, now)
    issued, events = [], []
    for rid in ids:
        body = certificate_body(session, settings, requests[rid], kid=kid, issued_at=now, batch=batch)
        row = rows.get(rid)
        state = "reissued" if row is not None else "issued"
        if row is None:
            row = Certificate(request_id=rid, body=body, signature="", key_id=kid)
        row.body, row.signature, row.key_id, row.issued_at = body, sign(body, key), kid, now
        session.add(row)
        events.append({"actor": "service", "entity_type": "certificate", "entity_id": rid, "to_state": state,
                       "data": {"key_id": kid, "models": [m["model"] for m in body["models"]]}})
        issued.append(row)
    audit_many(session, events)
    return issued

