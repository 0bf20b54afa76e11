"""Running one unlearning job: claim → (unlearn → verify → register)+ → promote, or hold for an operator.

The runner is the pipeline only. Who owns the job is `unlearn.lease`'s business, how a candidate is
judged is `unlearn.verification`'s, and what a request's status is follows from its targets
(`unlearn.store.transitions.sync_requests`). It names no family and no method: those are looked
up from the job's model and the job's method. Every step re-reads the database, since a Celery
message carries only the job id.
"""

from __future__ import annotations

import logging
import shutil
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
from pydantic import ValidationError
from sqlalchemy import func
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session, col, select

from unlearn.artifacts import locate, locate_stored
from unlearn.certificates import issue_certificates
from unlearn.contracts import Scope
from unlearn.families import get_family
from unlearn.families.base import ChainStep
from unlearn.lease import JobHandle, LeaseLost, claim, expired_jobs, lease_wait
from unlearn.methods import MethodError, UnlearnTask, get_method
from unlearn.plugins import UnknownComponent
from unlearn.registry import (
    ArtifactIntegrityError,
    artifact_dir,
    champion,
    ensure_intact,
    move_alias,
    quarantine,
    register_version,
    taint_stale_versions,
)
from unlearn.settings import Settings
from unlearn.store.db import id_chunks, session_scope
from unlearn.store.models import (
    DeletionRequest,
    Model,
    ModelVersion,
    RequestTarget,
    TrainingRecord,
    UnlearningJob,
    utcnow,
)
from unlearn.store.states import JOB_ACTIVE, JOB_FINAL, JobStage, RequestStatus, TargetStatus, VersionStatus
from unlearn.store.transitions import (
    audit,
    move_targets,
    move_version,
    requeue_job,
    sync_requests,
    transition,
)
from unlearn.verification import seed_reference, verify_candidate

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    status: str  # done | needs_review | retry | failed | busy | skipped (next: within a chain)
    detail: str = ""
    retry_in: float = 0.0
    version_id: str | None = None


def _targets(session: Session, job_id: str) -> list[RequestTarget]:
    """The job's targets still to serve (a canceled request's are left alone)."""
    return list(session.exec(select(RequestTarget).join(DeletionRequest, DeletionRequest.id == RequestTarget.request_id)
                             .where(RequestTarget.job_id == job_id, RequestTarget.status == TargetStatus.PENDING,
                                    DeletionRequest.status != RequestStatus.CANCELED)).all())


def _settle(session: Session, targets: list[RequestTarget], status: TargetStatus, *, actor: str,
            version_id: str | None = None, reason: str | None = None) -> list[str]:
    """Close these pending targets and bring their requests up to date; returns the requests now completed."""
    extra = {"version_id": version_id} if version_id is not None else {}
    move_targets(session, targets, status, frm=[TargetStatus.PENDING], **extra)
    return sync_requests(session, {t.request_id for t in targets}, actor=actor, reason=reason)


def _give_up(session: Session, job: UnlearningJob, worker: str, err: str) -> None:
    targets = _targets(session, job.id)
    transition(session, job, JobStage.FAILED, actor=worker, reason=err[:500])
    _settle(session, targets, TargetStatus.FAILED, actor=worker, reason=f"job failed: {err[:300]}")


# Errors a retry cannot mend: the job fails at the first.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (ArtifactIntegrityError, UnknownComponent, MethodError,
                                                     ValidationError)
# The database away (connection lost, SQLite locked) or a device out of memory: the same attempt may
# pass later. Retried with backoff by the task queue; the job's attempt cap still bounds them.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OperationalError, torch.cuda.OutOfMemoryError)


class TransientJobError(RuntimeError):
    """An attempt failed for a reason that may pass (see `TRANSIENT_ERRORS`); the job is queued again."""


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_ERRORS) or isinstance(exc, DBAPIError) and exc.connection_invalidated


def run_job(settings: Settings, job_id: str, worker: str) -> Outcome:
    """Run one job to its end, or hand it back. Safe under duplicate delivery."""
    url = settings.resolved_database_url
    with session_scope(url) as s:
        job = s.get(UnlearningJob, job_id)
        if job is None:
            return Outcome("skipped", "no such job")
        if job.stage in JOB_FINAL:
            return Outcome("skipped", f"job already {job.stage}")
        if job.attempts >= job.max_attempts and job.stage == JobStage.QUEUED or (
                job.stage in JOB_ACTIVE and job.attempts >= job.max_attempts
                and job.lease_until is not None and job.lease_until < utcnow()):
            _give_up(s, job, worker, job.error or "attempt cap reached")
            return Outcome("failed", "attempt cap reached")
        attempt = claim(s, job_id, worker, settings.lease_s)
        if attempt is None:
            return Outcome("busy", "held by another worker or its model is busy", retry_in=max(lease_wait(s, job_id), 1.0))
    try:
        with JobHandle(url, job_id, worker, attempt, settings.lease_s) as handle:
            return _run_claimed(settings, handle)
    except LeaseLost as exc:
        log.warning("%s", exc)
        return Outcome("skipped", str(exc))
    except Exception as exc:  # a crash in a method or verifier: retry up to the cap
        # What cannot heal (a corrupt artifact, a name no registry knows, parameters or data that fail
        # validation) fails at once; a corrupt artifact's version is quarantined too.
        permanent = isinstance(exc, PERMANENT_ERRORS)
        transient = is_transient(exc)
        err = str(exc) if isinstance(exc, ArtifactIntegrityError) else f"{type(exc).__name__}: {exc}"
        log.error("job %s attempt %s failed: %s\n%s", job_id, attempt, err, traceback.format_exc())
        with session_scope(url) as s:  # with the database away this raises too: transient, retried alike
            job = s.get(UnlearningJob, job_id)
            if job.worker != worker or job.attempts != attempt:
                return Outcome("skipped", "lease lost while failing")
            job.error = err[:2000]
            if isinstance(exc, ArtifactIntegrityError) and exc.version_id is not None:
                # the attempt's own transaction was rolled back
                quarantine(s, s.get(ModelVersion, exc.version_id), reason=err, actor=worker)
            if permanent or job.attempts >= job.max_attempts:
                _give_up(s, job, worker, err)
                return Outcome("failed", err)
            requeue_job(s, job, actor=worker, reason=err)
        if transient:  # handed back above; the caller's queue retries it with backoff
            raise TransientJobError(err) from exc
        return Outcome("retry", err, retry_in=min(2.0 ** attempt, 60.0))


@dataclass(frozen=True)
class _Plan:
    """What one attempt works on, read once when it starts."""

    model: Model
    base: ModelVersion
    method: str
    params: dict
    scope: Scope
    forget: list[str]  # samples this job removes
    keep: list[str]  # training samples the candidate still holds
    request_ids: list[str]
    suspects: list[str]  # samples an operator suspects beyond `forget` (corrective): a widening step drops them too
    budget_s: float  # wall seconds the job's chain of methods may spend (the model's, else the settings')


def _plan(s: Session, h: JobHandle, settings: Settings) -> _Plan:
    job = s.get(UnlearningJob, h.job_id)
    base = champion(s, job.model_name)
    ensure_intact(s, base, actor=h.worker)  # before any work: a corrupt base fails the job at once
    targets = _targets(s, job.id)
    h.write(s, base_version_id=base.id, message="preparing")
    already = set(base.excluded_ids)
    asked = {sid for t in targets for sid in t.forget_ids}
    # A reopened request (a compliance regression) is forgotten again even though the champion
    # already excludes its samples: the exact method re-derives the model without them.
    forget = sorted(asked if job.params.get("reopened") else asked - already)
    train_ids = set(s.exec(select(TrainingRecord.sample_id).where(
        TrainingRecord.model_name == job.model_name, TrainingRecord.split == "train")).all())
    request_ids = sorted({t.request_id for t in targets})
    suspects = {sid for chunk in id_chunks(request_ids) for scope in s.exec(
        select(DeletionRequest.scope).where(col(DeletionRequest.id).in_(chunk))).all()
        for sid in (scope.get("suspect_ids") or [])}
    model = s.get(Model, job.model_name)
    sync_requests(s, set(request_ids), actor=h.worker)  # → running
    return _Plan(model=model, base=base, method=job.method, params=dict(job.params),
                 scope=Scope.from_dict(job.scope, job.kind), forget=forget,
                 keep=sorted(train_ids - already - set(forget)), request_ids=request_ids,
                 suspects=sorted((suspects & train_ids) - already - set(forget)),
                 budget_s=model.cost_budget_s if model.cost_budget_s is not None else settings.chain_budget_s)


def _clear_earlier_attempts(url: str, out: Path, h: JobHandle) -> None:
    """Remove the folders earlier attempts of this job left (a write cut short by a crash or a full
    disk), so that they take no space and nothing trips on them; one a version was registered from
    (a candidate whose promotion lost a race) is kept."""
    with session_scope(url) as s:
        registered = set(s.exec(select(ModelVersion.artifact_path).where(ModelVersion.job_id == h.job_id)).all())
    for folder in out.parent.glob("attempt-*"):
        number = folder.name.removeprefix("attempt-")
        if number.isdigit() and int(number) < h.attempt and str(folder) not in registered:
            shutil.rmtree(folder, ignore_errors=True)


def _run_claimed(settings: Settings, h: JobHandle) -> Outcome:
    url = settings.resolved_database_url
    with session_scope(url) as s:
        plan = _plan(s, h, settings)
        if not plan.forget:  # everything asked for is already gone from the champion
            job = s.get(UnlearningJob, h.job_id)
            transition(s, job, JobStage.DONE, actor=h.worker, reason="nothing left to forget")
            job.result_version_id, job.progress = plan.base.id, 1.0
            completed = _settle(s, _targets(s, h.job_id), TargetStatus.DONE, actor=h.worker, version_id=plan.base.id)
            issue_certificates(s, settings, completed)
            return Outcome("done", "already forgotten", version_id=plan.base.id)

    # A deletion request must not be left undone by one method's miss: a candidate that fails its gate
    # is kept `rejected` with its verdict and the job goes on down the family's chain, within the cost
    # budget and the deadline. When the chain is spent, an operator decides (needs_review).
    family, model_dir = get_family(plan.model.family), locate(plan.base.artifact_path)
    chain = method_steps(family.method_chain(model_dir, plan.scope), plan.method, has_suspects=bool(plan.suspects))
    spent, misses = 0.0, []
    for i, step in enumerate(chain):
        if i > 0:
            stop = _stop_before(settings, plan, step, spent=spent, last_s=misses[-1][1])
            if stop:
                return _hold_for_review(settings, h, plan, misses, stop)
        outcome, wall_s = _try_method(settings, h, plan, step, index=i, span=(i / len(chain), (i + 1) / len(chain)))
        if outcome.status != "next":
            return outcome
        spent += wall_s
        misses.append((outcome.detail, wall_s))
    why = f"every method of the chain ({', '.join(s.method for s in chain)}) failed its gate"
    if not family.can_retrain(model_dir):
        why += f"; model {plan.model.name} has no retrain recipe"
    return _hold_for_review(settings, h, plan, misses, why)


def method_steps(family_chain: list[ChainStep], named: str, *, has_suspects: bool) -> list[ChainStep]:
    """The steps one job tries: `named` first (the method the request named, or `auto`'s choice), then
    the family's chain after that method's place in it, or the whole chain where it is not in it. A step
    that widens the forget set is dropped when no samples are suspected, and so is a repeat of a method
    already in the list on the same set."""
    steps = [s for s in family_chain if has_suspects or not s.widen]
    at = next((i for i, s in enumerate(steps) if s.method == named and not s.widen), None)
    rest = steps[at + 1:] if at is not None else steps
    first = steps[at] if at is not None else ChainStep(named)
    out = [first]
    for step in rest:
        if all((step.method, step.widen) != (o.method, o.widen) for o in out):
            out.append(step)
    return out


def _expected_seconds(s: Session, plan: _Plan, method: str, last_s: float) -> float:
    """What the next method will likely cost: its last recorded wall time on this model, else the time the
    previous method of this chain took (a simple estimate: the budget check only needs an order of size)."""
    infos = s.exec(select(ModelVersion.method_info).where(ModelVersion.model_name == plan.model.name,
                                                           ModelVersion.method == method)
                   .order_by(col(ModelVersion.created_at).desc()).limit(20)).all()
    recorded = next((i["wall_seconds"] for i in infos if isinstance(i, dict) and "wall_seconds" in i), None)
    return float(recorded) if recorded is not None else last_s


def _stop_before(settings: Settings, plan: _Plan, step: ChainStep, *, spent: float, last_s: float) -> str | None:
    """Why the chain must stop before `step` (the deadline passed, or the budget cannot pay for it), or None.
    The deadlines are read again: an operator may have extended one while the last method ran."""
    with session_scope(settings.resolved_database_url) as s:
        due = s.exec(select(func.min(DeletionRequest.due_at))
                     .where(col(DeletionRequest.id).in_(plan.request_ids))).one()
        expected = _expected_seconds(s, plan, step.method, last_s)
    if due is not None and _aware(due) < utcnow():
        return f"the deadline ({_aware(due).isoformat()}) passed before {step.method} could start"
    if spent + expected > plan.budget_s:
        return (f"cost budget: {spent:.0f} s spent + {expected:.0f} s expected for {step.method} exceeds "
                f"the model's budget of {plan.budget_s:.0f} s")
    return None


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)  # SQLite hands back naive UTC


def _hold_for_review(settings: Settings, h: JobHandle, plan: _Plan, misses: list[tuple[str, float]],
                     why: str) -> Outcome:
    """End the job without a passing candidate: its targets and requests wait for an operator's decision
    (`needs_review`), every attempt's verdict kept with its version, the overdue clock still running."""
    reason = f"needs an operator's review: {why}; " + " | ".join(detail for detail, _ in misses)
    with session_scope(settings.resolved_database_url) as s:
        job = s.get(UnlearningJob, h.job_id)
        _settle(s, _targets(s, h.job_id), TargetStatus.NEEDS_REVIEW, actor=h.worker, reason=reason[:2000])
        transition(s, job, JobStage.DONE, actor=h.worker, reason=reason[:500],
                   data={"needs_review": why[:500], "attempts": len(misses)})
        h.write(s, progress=1.0, message="needs_review")
    return Outcome("needs_review", reason)


def _try_method(settings: Settings, h: JobHandle, plan: _Plan, step: ChainStep, *, index: int,
                span: tuple[float, float]) -> tuple[Outcome, float]:
    """One candidate of the job: unlearn with the step's method, verify, register; promote it when it passes.
    A failing candidate is kept as `rejected` with its verdict, and the outcome is "next": the caller goes
    on down the chain. Returns the outcome and the attempt's wall seconds (unlearning and verifying)."""
    url = settings.resolved_database_url
    root = settings.resolved_artifact_root
    lo, hi = span
    method = step.method
    base_dir = locate(plan.base.artifact_path)
    suffix = "" if index == 0 else f"-{index}-{method}"
    out = artifact_dir(root, plan.model.name, "jobs", h.job_id, f"attempt-{h.attempt}{suffix}")
    shutil.rmtree(out, ignore_errors=True)
    if index == 0:
        _clear_earlier_attempts(url, out, h)
    else:
        with session_scope(url) as s:  # back from verifying the last method's candidate
            job = s.get(UnlearningJob, h.job_id)
            transition(s, job, JobStage.UNLEARNING, actor=h.worker, reason=f"trying {method}")
            h.write(s, message=method)
            sync_requests(s, {t.request_id for t in _targets(s, h.job_id)}, actor=h.worker)  # → running
    out.mkdir(parents=True)
    forget = sorted({*plan.forget, *plan.suspects}) if step.widen else plan.forget
    keep = sorted(set(plan.keep) - set(plan.suspects)) if step.widen else plan.keep
    spec = get_method(method)
    params = plan.params if index == 0 else {}  # the operator's parameters are for the method they named
    t0 = time.perf_counter()
    info = spec.run(UnlearnTask(
        family=plan.model.family, base_dir=base_dir, out_dir=out, forget_ids=forget, retain_ids=keep,
        scope=plan.scope, params=params, device=settings.device,
        progress=lambda f, m: h.progress(f, m, stage_span=(lo, lo + 0.6 * (hi - lo)))))
    unlearn_s = time.perf_counter() - t0
    if spec.is_reference:  # the candidate is the family's retrain itself: verify against it, do not train twice
        seed_reference(settings, plan.model.name, keep, out)

    with session_scope(url) as s:
        job = s.get(UnlearningJob, h.job_id)
        transition(s, job, JobStage.VERIFYING, actor=h.worker)
        h.write(s, progress=lo + 0.6 * (hi - lo), message="retrain reference")
        sync_requests(s, {t.request_id for t in _targets(s, h.job_id)}, actor=h.worker)  # → verifying
    h.progress(0.0, "verifying", stage_span=(lo + 0.6 * (hi - lo), hi))
    with session_scope(url) as s:
        checked = verify_candidate(
            s, settings, plan.model, candidate_dir=out, base=plan.base, method=method,
            forget_ids=sorted(set(plan.base.excluded_ids) | set(forget)), keep_ids=keep, scope=plan.scope,
            report_dir=artifact_dir(root, plan.model.name, "reports", h.job_id, f"attempt-{h.attempt}{suffix}"),
            parent_id=plan.base.id, new_forget_ids=forget)
    wall_s = time.perf_counter() - t0
    report = {**checked.report, "unlearn_seconds": round(unlearn_s, 4),
              **({"warning": step.warning} if step.warning else {})}
    attempt = {"step": index, "seconds": round(unlearn_s, 4), "wall_seconds": round(wall_s, 4),
               "device": settings.device, **({"widened_by": len(forget) - len(plan.forget)} if step.widen else {}),
               **({"warning": step.warning} if step.warning else {})}

    with session_scope(url) as s:
        job = s.get(UnlearningJob, h.job_id)
        h.write(s, progress=hi - 0.05 * (hi - lo), message="registering")
        base = s.get(ModelVersion, job.base_version_id)
        version = register_version(s, parent=base, method=method, params=params, folder=out,
                                   forget_ids=forget, request_ids=plan.request_ids, job_id=h.job_id,
                                   method_info={**info, **attempt}, verdict=report)
        targets = _targets(s, h.job_id)
        audit(s, actor=h.worker, entity_type="job", entity_id=h.job_id, to_state="attempt",
              reason=f"{method}: {'pass' if checked.verdict.passed else 'fail'}",
              data={"method": method, "version_id": version.id, "verdict": "pass" if checked.verdict.passed else "fail",
                    "reasons": list(checked.verdict.reasons)[:10], **attempt})
        if checked.verdict.passed:
            transition(s, job, JobStage.PROMOTING, actor=h.worker)
            h.write(s)
            if not move_alias(s, job.model_name, version, expected=base.id, actor=h.worker,
                              reason=f"job {h.job_id} passed verification",
                              fresh_manifest=locate_stored(version.artifact_path) == out):
                # The champion moved under us (a rollback, a racing job): redo on the new champion.
                requeue_job(s, job, actor=h.worker, reason="champion moved during the job")
                h.write(s, lease_until=None)
                return Outcome("retry", "champion moved", retry_in=1.0), wall_s
            move_version(s, version, VersionStatus.PROMOTED, frm=[VersionStatus.CANDIDATE])
            if base.status == VersionStatus.PROMOTED:
                move_version(s, base, VersionStatus.RETIRED, frm=[VersionStatus.PROMOTED])
            completed = _settle(s, targets, TargetStatus.DONE, actor=h.worker, version_id=version.id)
            # Whatever the requests' fate on other models, what this champion forgot is gone from this
            # one: every older version still holding it is tainted in this same transaction.
            taint_stale_versions(s, job.model_name, actor=h.worker)
            s.flush()
            issue_certificates(s, settings, completed)
            transition(s, job, JobStage.DONE, actor=h.worker, reason="promoted")
            h.write(s, progress=1.0, message="done", result_version_id=version.id)
            return Outcome("done", "promoted", version_id=version.id), wall_s
        move_version(s, version, VersionStatus.REJECTED, frm=[VersionStatus.CANDIDATE])
        reason = f"verifier ({method}): " + "; ".join(checked.verdict.reasons)
        move_targets(s, targets, TargetStatus.PENDING, frm=[TargetStatus.PENDING], version_id=version.id)
        audit(s, actor=h.worker, entity_type="job", entity_id=h.job_id, to_state="next_method",
              reason=reason[:500], data={"rejected_version": version.id, "method": method})
        h.write(s, message=f"{method} rejected; trying the next method", result_version_id=version.id)
        return Outcome("next", reason, version_id=version.id), wall_s


__all__ = ["Outcome", "claim", "expired_jobs", "run_job"]
