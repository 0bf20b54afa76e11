"""Batching: the pending requests for one model become one job, not one job each.

Requests wait `batch_window_s` after their arrival so that a burst lands in one batch. Requests
batch together when they agree on model, kind, method (after `auto` is resolved), parameters
and, for class or concept removal, the label: those decide how the job runs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from unlearn.contracts import Scope
from unlearn.isolation import model_fault, model_savepoint
from unlearn.registry import resolve_method
from unlearn.settings import Settings
from unlearn.store.models import DeletionRequest, RequestTarget, UnlearningJob, utcnow
from unlearn.store.states import RequestStatus, TargetStatus
from unlearn.store.transitions import audit, move_targets, sync_requests

log = logging.getLogger(__name__)


def scope_of(request: DeletionRequest) -> Scope:
    return Scope.from_dict(request.scope, request.kind)


def job_scope(scopes: list[Scope]) -> dict:
    """One scope for a batch: a class or concept removal keeps its label, a mixture is plain samples."""
    first = scopes[0]
    if first.type == "concept" and first.extra and all(s.to_dict() == first.to_dict() for s in scopes):
        return {**first.to_dict(), "labels_known": True}  # a text-to-image concept with its prompts
    if all(s.type == first.type and s.label == first.label for s in scopes) and first.type in ("class", "concept"):
        return {"type": first.type, "label": first.label, "concept": first.concept, "labels_known": True}
    return {"type": "samples", "label": None, "concept": None,
            "labels_known": all(s.labels_known for s in scopes)}


def fail_unservable(session: Session, model_name: str, targets: Iterable[RequestTarget], exc: Exception, *,
                    actor: str) -> list[str]:
    """Fail these pending targets of a model that cannot be served, with a reason the API and dashboard
    show; their requests follow. Returns the ids of the requests touched."""
    reason = f"model {model_name} cannot be served: {type(exc).__name__}: {exc}"[:500]
    log.error("%s", reason)
    moved = move_targets(session, targets, TargetStatus.FAILED, frm=[TargetStatus.PENDING])
    request_ids = {t.request_id for t in moved}
    sync_requests(session, request_ids, actor=actor, reason=reason)
    return sorted(request_ids)


def coalesce(session: Session, settings: Settings, *, force: bool = False) -> list[str]:
    """Create jobs for pending targets older than the batch window; returns the new job ids.

    Safe to run concurrently: targets are attached with a conditional update, so each joins
    exactly one job; a job that won no target is deleted before commit. Each model is batched in a
    savepoint of its own: a model that cannot be served (`model_fault`) fails its own requests and
    every other model is batched as usual."""
    cutoff = utcnow() - timedelta(seconds=0 if force else settings.batch_window_s)
    rows = session.exec(
        select(RequestTarget, DeletionRequest).join(DeletionRequest, DeletionRequest.id == RequestTarget.request_id)
        .where(col(RequestTarget.job_id).is_(None), RequestTarget.status == TargetStatus.PENDING,
               col(DeletionRequest.status).in_([RequestStatus.RECEIVED, RequestStatus.QUEUED]), DeletionRequest.received_at <= cutoff)
        .order_by(DeletionRequest.received_at).limit(settings.max_batch_requests * 20)).all()
    by_model: dict[str, list[tuple[RequestTarget, DeletionRequest]]] = {}
    for target, request in rows:
        by_model.setdefault(target.model_name, []).append((target, request))
    job_ids = []
    for model_name, members in by_model.items():
        try:
            with model_savepoint(session):
                new = _batch_model(session, settings, model_name, members)
        except Exception as exc:
            if not model_fault(exc):
                raise
            fail_unservable(session, model_name, [t for t, _ in members], exc, actor="coalescer")
            continue
        job_ids += new
    return job_ids


def _batch_model(session: Session, settings: Settings, model_name: str,
                 members: list[tuple[RequestTarget, DeletionRequest]]) -> list[str]:
    """The jobs for one model's pending targets: one per batch key, in chunks of `max_batch_requests`."""
    groups: dict[tuple, list[tuple[RequestTarget, DeletionRequest]]] = {}
    resolved: dict[tuple[str, str], str] = {}  # `auto`'s pick reads the champion: once per method and scope
    for target, request in members:
        scope = scope_of(request)
        scope_json = json.dumps(scope.to_dict(), sort_keys=True)
        if (request.method, scope_json) not in resolved:
            resolved[request.method, scope_json] = resolve_method(session, model_name, request.method, scope)
        method = resolved[request.method, scope_json]
        label = scope.label if scope.type in ("class", "concept") else None
        # a text-to-image concept (its prompts in `extra`) batches only with the very same request
        what = ("concept", scope_json) if scope.type == "concept" and scope.extra \
            else (scope.type if label is not None else "samples", label)
        key = (request.kind, method, json.dumps(request.params, sort_keys=True), *what)
        groups.setdefault(key, []).append((target, request))
    job_ids = []
    for (kind, method, params, _, _), batch in groups.items():
        for start in range(0, len(batch), settings.max_batch_requests):
            chunk = batch[start:start + settings.max_batch_requests]
            job = UnlearningJob(model_name=model_name, method=method, params=json.loads(params), kind=kind,
                                scope=job_scope([scope_of(r) for _, r in chunk]), queue="gpu",
                                max_attempts=settings.max_attempts, enqueued_at=utcnow())
            session.add(job)
            session.flush()
            won = session.execute(update(RequestTarget).where(
                col(RequestTarget.id).in_([t.id for t, _ in chunk]), col(RequestTarget.job_id).is_(None))
                .values(job_id=job.id)).rowcount
            if won == 0:
                session.delete(job)
                continue
            audit(session, actor="coalescer", entity_type="job", entity_id=job.id, to_state="queued",
                  data={"model": model_name, "method": method, "targets": won})
            sync_requests(session, {r.id for _, r in chunk}, actor="coalescer", data={"job": job.id})  # → queued
            job_ids.append(job.id)
    return job_ids
