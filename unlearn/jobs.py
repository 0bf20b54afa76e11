"""Running one unlearning job: claim → unlearn → verify → register → promote or reject.

Every step re-reads the database: a Celery message carries only the job id, and a redelivered
message may arrive while another worker still runs the job. The lease decides who owns it: a
job is claimed with a conditional update, progress renews the lease, and a worker that finds
its lease taken over stops writing (`LeaseLost`).
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, exists, or_, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from unlearn.certificates import issue_certificates
from unlearn.families import Scope, get_family
from unlearn.identity import sha256_ids
from unlearn.methods import UnlearnTask, get_method
from unlearn.registry import (
    artifact_dir,
    champion,
    move_alias,
    register_version,
    taint_stale_versions,
)
from unlearn.settings import Settings
from unlearn.store.db import session_scope
from unlearn.store.models import (
    DeletionRequest,
    Model,
    ModelVersion,
    RequestTarget,
    TrainingRecord,
    UnlearningJob,
    utcnow,
)
from unlearn.store.transitions import JOB_ACTIVE, audit, transition

log = logging.getLogger(__name__)


class LeaseLost(RuntimeError):
    """Another delivery took this job over; this one must stop without writing."""


@dataclass
class Outcome:
    status: str  # done | rejected | retry | failed | busy | skipped
    detail: str = ""
    retry_in: float = 0.0
    version_id: str | None = None


# ---------------------------------------------------------------- claiming

def claim(session: Session, job_id: str, worker: str, lease_s: float) -> int | None:
    """Take the job (queued, or active with an expired lease) if no other job of its model is
    active; return the attempt number, or None if someone else holds it or it is finished."""
    now = utcnow()
    other = aliased(UnlearningJob)
    job = session.get(UnlearningJob, job_id)
    if job is None:
        return None
    prior = job.stage
    busy_model = exists().where(other.model_name == UnlearningJob.model_name, other.id != UnlearningJob.id,
                                col(other.stage).in_(JOB_ACTIVE), other.lease_until > now)
    claimable = or_(UnlearningJob.stage == "queued",
                    and_(col(UnlearningJob.stage).in_(JOB_ACTIVE), UnlearningJob.lease_until < now))
    got = session.execute(update(UnlearningJob).where(UnlearningJob.id == job_id, claimable, ~busy_model)
                          .values(stage="unlearning", attempts=UnlearningJob.attempts + 1, worker=worker,
                                  lease_until=now + timedelta(seconds=lease_s), started_at=now, error=None,
                                  progress=0.0, message="claimed")
                          .execution_options(synchronize_session=False)).rowcount
    if got != 1:
        return None
    session.refresh(job)
    # The conditional update above is the transition (it must be atomic); it is audited like any other.
    audit(session, actor=worker, entity_type="job", entity_id=job_id, from_state=prior, to_state="unlearning",
          data={"attempt": job.attempts})
    return job.attempts


def lease_wait(session: Session, job_id: str) -> float:
    """Seconds until the job (or its model's active job) might become claimable."""
    job = session.get(UnlearningJob, job_id)
    now = utcnow()
    leases = session.exec(select(UnlearningJob.lease_until).where(
        UnlearningJob.model_name == job.model_name, col(UnlearningJob.stage).in_(JOB_ACTIVE),
        UnlearningJob.lease_until > now)).all()
    return max([(t - now).total_seconds() for t in leases if t] or [0.0])


class JobHandle:
    """Writes progress for one attempt, renewing the lease, and notices when the lease is lost."""

    def __init__(self, url: str, job_id: str, worker: str, attempt: int, lease_s: float) -> None:
        self.url, self.job_id, self.worker, self.attempt, self.lease_s = url, job_id, worker, attempt, lease_s
        self._last = 0.0
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> JobHandle:
        # Methods report progress at their own pace (a reference retrain not at all): a heartbeat
        # renews the lease meanwhile, so only a dead worker's lease runs out.
        self._thread = threading.Thread(target=self._heartbeat, name=f"lease-{self.job_id[:8]}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _heartbeat(self) -> None:
        while not self._stop.wait(max(self.lease_s / 3, 0.2)):
            try:
                with session_scope(self.url) as s:
                    self.write(s)
            except LeaseLost:
                self.lost = True
                return
            except Exception:  # a database hiccup: the next beat tries again
                log.warning("lease renewal of job %s failed", self.job_id, exc_info=True)

    def _mine(self):
        return and_(UnlearningJob.id == self.job_id, UnlearningJob.worker == self.worker,
                    UnlearningJob.attempts == self.attempt)

    def write(self, session: Session, **values: Any) -> None:
        values.setdefault("lease_until", utcnow() + timedelta(seconds=self.lease_s))
        if session.execute(update(UnlearningJob).where(self._mine()).values(**values)
                           .execution_options(synchronize_session=False)).rowcount != 1:
            raise LeaseLost(f"job {self.job_id}: attempt {self.attempt} lost its lease")

    def progress(self, fraction: float, message: str, *, stage_span: tuple[float, float] = (0.0, 0.8)) -> None:
        if self.lost:
            raise LeaseLost(f"job {self.job_id}: attempt {self.attempt} lost its lease")
        now = time.monotonic()
        if now - self._last < 0.5 and fraction < 1.0:
            return
        self._last = now
        lo, hi = stage_span
        with session_scope(self.url) as s:
            self.write(s, progress=round(lo + (hi - lo) * min(max(fraction, 0.0), 1.0), 4), message=message[:200])


# ---------------------------------------------------------------- settling requests

def settle_requests(session: Session, request_ids: set[str], *, actor: str, reason: str | None = None) -> list[str]:
    """Move each request to the state its targets now add up to; returns those now completed."""
    completed = []
    for rid in sorted(request_ids):
        request = session.get(DeletionRequest, rid)
        statuses = [t.status for t in session.exec(select(RequestTarget).where(RequestTarget.request_id == rid))]
        if request.status in ("canceled", "completed", "rejected", "failed"):
            continue
        if "failed" in statuses:
            transition(session, request, "failed", actor=actor, reason=reason)
        elif "rejected" in statuses:
            if request.status == "queued":
                transition(session, request, "running", actor=actor)
            if request.status == "running":
                transition(session, request, "verifying", actor=actor)
            transition(session, request, "rejected", actor=actor, reason=reason)
        elif all(s in ("done", "canceled") for s in statuses):
            transition(session, request, "completed", actor=actor)
            completed.append(rid)
    return completed


def _targets(session: Session, job_id: str) -> list[RequestTarget]:
    return list(session.exec(select(RequestTarget).join(DeletionRequest, DeletionRequest.id == RequestTarget.request_id)
                             .where(RequestTarget.job_id == job_id, RequestTarget.status == "pending",
                                    DeletionRequest.status != "canceled")).all())


def _move_requests(session: Session, targets: list[RequestTarget], frm: set[str], to: str, actor: str) -> None:
    for rid in sorted({t.request_id for t in targets}):
        request = session.get(DeletionRequest, rid)
        if request.status in frm:
            transition(session, request, to, actor=actor)


# ---------------------------------------------------------------- the job

def reference_model(settings: Settings, model_name: str, base_dir: Path, keep_ids: list[str], *,
                    device: str, family: str) -> Path:
    """The exact retrain-from-scratch model on `keep_ids`, cached by the hash of that set."""
    folder = _reference_dir(settings, model_name, keep_ids)
    if (folder / "unlearn.json").exists():
        return folder
    tmp = folder.with_name(folder.name + f".tmp-{time.time_ns()}")
    try:
        get_family(family).retrain(base_dir, keep_ids, tmp, device=device)
        if not folder.exists():
            tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _reference_dir(settings: Settings, model_name: str, keep_ids: list[str]) -> Path:
    return artifact_dir(settings.resolved_artifact_root, model_name, "references", sha256_ids(keep_ids)[:24])


def seed_reference(settings: Settings, model_name: str, keep_ids: list[str], source: Path) -> None:
    folder = _reference_dir(settings, model_name, keep_ids)
    if not folder.exists():
        tmp = folder.with_name(folder.name + f".tmp-{time.time_ns()}")
        shutil.copytree(source, tmp)
        try:
            tmp.rename(folder)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)


# The utility and forgetting criteria whose course over a lineage C5 and C6 plot, per family.
LINEAGE_CRITERIA = {"lm": ("knowmem_retain", "verbmem", "knowmem_forget"),
                    "classifier": ("test_acc", "retain_acc", "forget_acc"),
                    "diffusion": ("retained_acc_ratio", "forget_rate", "retained_fd_ratio")}


def _lineage_plots(settings: Settings, parent_id: str, family: str, report: dict, forgotten: int,
                   report_dir: Path) -> dict[str, str]:
    """C5 (utility against the forget set's size) and C6 (over sequential requests) for this lineage,
    drawn from the verdicts its versions already stored plus this one."""
    from unlearn.verify.muse import history_plots

    history = [{"forgotten": forgotten, "verdict": report}]
    with session_scope(settings.resolved_database_url) as s:
        v = s.get(ModelVersion, parent_id)
        while v is not None:
            if v.metrics.get("criteria"):
                history.append({"forgotten": len(v.excluded_ids), "verdict": v.metrics})
            v = s.get(ModelVersion, v.parent_id) if v.parent_id else None
    names = [c for c in LINEAGE_CRITERIA.get(family, ()) if c in report["criteria"]] or list(report["criteria"])[:3]
    try:
        return history_plots(history[::-1], report_dir, names)
    except Exception:  # a plot is a convenience; it never fails a verification
        log.warning("lineage plots failed", exc_info=True)
        return {}


def thresholds_for(settings: Settings, model: Model) -> dict[str, float]:
    """Only the gates someone set (deployment-wide, then per model): the verifier owns the defaults."""
    deployment = {"forget_acc_margin": settings.gate_forget_acc_margin,
                  "test_acc_margin": settings.gate_test_acc_margin, "mia_rel_tol": settings.gate_mia_rel_tol}
    return {**{k: v for k, v in deployment.items() if v is not None}, **(model.thresholds or {})}


def run_job(settings: Settings, job_id: str, worker: str) -> Outcome:
    """Run one job to its end, or hand it back. Safe under duplicate delivery."""
    url = settings.resolved_database_url
    with session_scope(url) as s:
        job = s.get(UnlearningJob, job_id)
        if job is None:
            return Outcome("skipped", "no such job")
        if job.stage in ("done", "failed"):
            return Outcome("skipped", f"job already {job.stage}")
        if job.attempts >= job.max_attempts and job.stage == "queued" or (
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
        err = f"{type(exc).__name__}: {exc}"
        log.error("job %s attempt %s failed: %s\n%s", job_id, attempt, err, traceback.format_exc())
        with session_scope(url) as s:
            job = s.get(UnlearningJob, job_id)
            if job.worker != worker or job.attempts != attempt:
                return Outcome("skipped", "lease lost while failing")
            job.error = err[:2000]
            if job.attempts >= job.max_attempts:
                _give_up(s, job, worker, err)
                return Outcome("failed", err)
            transition(s, job, "queued", actor=worker, reason=err[:500])
            job.lease_until = None
            _move_requests(s, _targets(s, job_id), {"running", "verifying"}, "queued", worker)
            return Outcome("retry", err, retry_in=min(2.0 ** job.attempts, 60.0))


def _give_up(session: Session, job: UnlearningJob, worker: str, err: str) -> None:
    targets = _targets(session, job.id)
    transition(session, job, "failed", actor=worker, reason=err[:500])
    for t in targets:
        t.status = "failed"
        session.add(t)
    session.flush()
    settle_requests(session, {t.request_id for t in targets}, actor=worker, reason=f"job failed: {err[:300]}")


def _run_claimed(settings: Settings, h: JobHandle) -> Outcome:
    url = settings.resolved_database_url
    root = settings.resolved_artifact_root
    with session_scope(url) as s:
        job = s.get(UnlearningJob, h.job_id)
        model = s.get(Model, job.model_name)
        base = champion(s, job.model_name)
        targets = _targets(s, job.id)
        h.write(s, base_version_id=base.id, message="preparing")
        already = set(base.excluded_ids)
        asked = {sid for t in targets for sid in t.forget_ids}
        # A reopened request (a compliance regression) is forgotten again even though the champion
        # already excludes its samples: the exact retrain below re-derives the model without them.
        forget = sorted(asked if job.params.get("reopened") else asked - already)
        request_ids = sorted({t.request_id for t in targets})
        train_ids = list(s.exec(select(TrainingRecord.sample_id).where(
            TrainingRecord.model_name == job.model_name, TrainingRecord.split == "train")).all())
        keep = sorted(set(train_ids) - already - set(forget))
        _move_requests(s, targets, {"queued"}, "running", h.worker)
        job_snapshot = (job.method, dict(job.params), job.kind, dict(job.scope), model.family,
                        thresholds_for(settings, model))
        if not forget:  # everything asked for is already gone from the champion
            for t in targets:
                t.status, t.version_id = "done", base.id
                s.add(t)
            transition(s, job, "done", actor=h.worker, reason="nothing left to forget")
            job.result_version_id, job.progress = base.id, 1.0
            s.flush()
            issue_certificates(s, settings, settle_requests(s, set(request_ids), actor=h.worker))
            return Outcome("done", "already forgotten", version_id=base.id)
    method, params, kind, scope_d, family, thresholds = job_snapshot
    scope = Scope(kind=kind, type=scope_d.get("type", "samples"), label=scope_d.get("label"),
                  concept=scope_d.get("concept"), labels_known=scope_d.get("labels_known", True))
    base_dir = Path(base.artifact_path)
    out = artifact_dir(root, base.model_name, "jobs", h.job_id, f"attempt-{h.attempt}")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    info = get_method(method).run(UnlearnTask(
        family=family, base_dir=base_dir, out_dir=out, forget_ids=forget, retain_ids=keep, scope=scope,
        params=params, device=settings.device, progress=lambda f, m: h.progress(f, m, stage_span=(0.0, 0.6))))
    unlearn_s = time.perf_counter() - t0
    if method == "retrain":  # the candidate is the exact reference: verify against it, do not train twice
        seed_reference(settings, base.model_name, keep, out)

    with session_scope(url) as s:
        job = s.get(UnlearningJob, h.job_id)
        transition(s, job, "verifying", actor=h.worker)
        h.write(s, stage="verifying", progress=0.6, message="retrain reference")
        _move_requests(s, _targets(s, h.job_id), {"running"}, "verifying", h.worker)
    t1 = time.perf_counter()
    fam = get_family(family)
    ref = (reference_model(settings, base.model_name, base_dir, keep, device=settings.device, family=family)
           if fam.needs_reference else None)
    h.progress(0.5, "verifying", stage_span=(0.6, 1.0))
    report_dir = artifact_dir(root, base.model_name, "reports", h.job_id, f"attempt-{h.attempt}")
    report_dir.mkdir(parents=True, exist_ok=True)
    cumulative = sorted(set(base.excluded_ids) | set(forget))
    verdict = fam.verify(out, ref, cumulative, keep, scope, device=settings.device, thresholds=thresholds,
                         report_dir=report_dir)
    report = verdict.to_dict()
    report["plots"].update(_lineage_plots(settings, base.id, family, report, len(cumulative), report_dir))
    report.update({"method": method, "unlearn_seconds": round(unlearn_s, 4),
                   "verify_seconds": round(time.perf_counter() - t1, 4),
                   "reference": str(ref) if ref else None})
    (report_dir / "verdict.json").write_text(json.dumps(report, indent=2, default=str))

    with session_scope(url) as s:
        job = s.get(UnlearningJob, h.job_id)
        h.write(s, progress=0.95, message="registering")
        base = s.get(ModelVersion, job.base_version_id)
        version = register_version(s, parent=base, method=method, params=params, folder=out, forget_ids=forget,
                                   request_ids=request_ids, job_id=h.job_id,
                                   method_info={**info, "seconds": round(unlearn_s, 4)}, verdict=report)
        targets = _targets(s, h.job_id)
        if verdict.passed:
            transition(s, job, "promoting", actor=h.worker)
            h.write(s, stage="promoting")
            if not move_alias(s, job.model_name, version, expected=base.id, actor=h.worker,
                              reason=f"job {h.job_id} passed verification"):
                # The champion moved under us (a rollback, a racing job): redo on the new champion.
                transition(s, job, "queued", actor=h.worker, reason="champion moved during the job")
                h.write(s, lease_until=None)
                _move_requests(s, targets, {"verifying", "running"}, "queued", h.worker)
                return Outcome("retry", "champion moved", retry_in=1.0)
            version.status = "promoted"
            if base.status == "promoted":
                base.status = "retired"
            s.add_all([version, base])
            for t in targets:
                t.status, t.version_id = "done", version.id
                s.add(t)
            s.flush()
            completed = settle_requests(s, set(request_ids), actor=h.worker)
            taint_stale_versions(s, job.model_name, actor=h.worker)  # the completed requests define the taint
            s.flush()
            issue_certificates(s, settings, completed)
            outcome = Outcome("done", "promoted", version_id=version.id)
        else:
            version.status = "rejected"
            s.add(version)
            for t in targets:
                t.status, t.version_id = "rejected", version.id
                s.add(t)
            s.flush()
            reason = "verifier: " + "; ".join(verdict.reasons)
            settle_requests(s, set(request_ids), actor=h.worker, reason=reason)
            outcome = Outcome("rejected", reason, version_id=version.id)
        transition(s, job, "done", actor=h.worker, reason=outcome.detail[:500])
        h.write(s, progress=1.0, message=outcome.status, result_version_id=version.id)
        return outcome


def expired_jobs(session: Session, now: datetime | None = None) -> list[str]:
    now = now or utcnow()
    return list(session.exec(select(UnlearningJob.id).where(
        col(UnlearningJob.stage).in_(JOB_ACTIVE), UnlearningJob.lease_until < now)).all())
