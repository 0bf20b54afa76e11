"""Continuous compliance: re-verify each champion against everything ever forgotten from its lineage.

A check passes when (1) the champion excludes every sample of every completed deletion request
for its model, and (2) the family's verifier, run on the union of those samples against a fresh
retrain-from-scratch reference, still passes. A failure where the version had passed before is
a regression: it raises an alert (audit event + metric), marks the champion tainted, and reopens
the affected requests, which are then served by an exact retrain.

The champion's files are checked against its manifest first. A corrupt champion is quarantined and the
check fails as an integrity failure, not a regression: the method did not fail to forget, the stored
weights changed, so no request is reopened on its account (an operator rolls back to an intact version).
"""

from __future__ import annotations

import json
import logging

from sqlmodel import Session, select

from unlearn.artifacts import locate
from unlearn.contracts import Scope
from unlearn.isolation import model_fault, model_savepoint
from unlearn.registry import (
    CHAMPION,
    ArtifactIntegrityError,
    artifact_dir,
    champion,
    completed_forget_ids,
    ensure_intact,
    quarantine,
)
from unlearn.settings import Settings
from unlearn.store.models import (
    Alias,
    ComplianceCheck,
    DeletionRequest,
    Model,
    RequestTarget,
    TrainingRecord,
)
from unlearn.store.states import RequestStatus, TargetStatus
from unlearn.store.transitions import audit, move_targets, sync_requests
from unlearn.verification import verify_candidate

log = logging.getLogger(__name__)

REOPEN_METHOD = "retrain"  # a regression is fixed by the exact method, whatever served the request first


def run_compliance_check(session: Session, settings: Settings, model_name: str,
                         trigger: str = "schedule") -> ComplianceCheck:
    model = session.get(Model, model_name)
    if model is None:
        raise KeyError(f"unknown model {model_name!r}")
    version = champion(session, model_name)
    gone = completed_forget_ids(session, model_name)
    missing = sorted(gone - set(version.excluded_ids))
    report: dict = {"forgotten": len(gone), "missing_from_champion": missing[:50], "version": version.version}
    passed = not missing
    try:
        ensure_intact(session, version, actor="compliance")
        if passed and gone:
            train = set(session.exec(select(TrainingRecord.sample_id).where(
                TrainingRecord.model_name == model_name, TrainingRecord.split == "train")).all())
            keep = sorted(train - set(version.excluded_ids))
            report_dir = artifact_dir(settings.resolved_artifact_root, model_name, "compliance", version.id)
            checked = verify_candidate(session, settings, model, candidate_dir=locate(version.artifact_path),
                                       base=version, method=version.method, forget_ids=sorted(gone), keep_ids=keep,
                                       scope=Scope(type="samples"), report_dir=report_dir,
                                       parent_id=version.parent_id)
            report["verdict"] = checked.report
            (report_dir / "compliance.json").write_text(json.dumps(report, indent=2, default=str))
            passed = checked.verdict.passed
    except ArtifactIntegrityError as exc:  # the champion's files changed: quarantined, not a regression
        # ensure_intact quarantined it already, unless the change came while the verifier ran (its
        # reference is retrained from the champion, checked again there)
        quarantine(session, version, reason=str(exc), actor="compliance")
        report["integrity"] = str(exc)
        passed = False
    was_ok = version.verdict in (None, "pass")
    check = ComplianceCheck(model_name=model_name, version_id=version.id, trigger=trigger, passed=passed,
                            regression=not passed and was_ok and "integrity" not in report, forgotten=len(gone),
                            report=report)
    if check.regression:
        check.reopened_request_ids = _regress(session, model_name, version, report)
    session.add(check)
    session.flush()
    return check


def _regress(session: Session, model_name: str, version, report: dict) -> list[str]:
    version.tainted = True
    session.add(version)
    reasons = report.get("verdict", {}).get("reasons") or [f"{len(report['missing_from_champion'])} forgotten "
                                                            "samples are back in the champion"]
    audit(session, actor="compliance", entity_type="version", entity_id=version.id, to_state="compliance-regression",
          reason="; ".join(reasons)[:500], data={"model": model_name})
    reopened = {}
    rows = session.exec(select(RequestTarget, DeletionRequest).join(
        DeletionRequest, DeletionRequest.id == RequestTarget.request_id).where(
        RequestTarget.model_name == model_name, DeletionRequest.status == RequestStatus.COMPLETED)).all()
    move_targets(session, [t for t, _ in rows], TargetStatus.PENDING, frm=[TargetStatus.DONE, TargetStatus.CANCELED],
                 job_id=None, version_id=None)
    for _, request in rows:
        if request.id not in reopened:
            request.params = {**request.params, "reopened": True}
            request.method = REOPEN_METHOD
            session.add(request)
            reopened[request.id] = request
    sync_requests(session, reopened, actor="compliance", reopen=True,  # → queued
                  reason="reopened: the champion failed its compliance re-check")
    return list(reopened)


def check_model(session: Session, settings: Settings, model_name: str,
                trigger: str = "schedule") -> ComplianceCheck:
    """`run_compliance_check` in a savepoint of its own: a fault of this model (a missing artifact, an
    unknown family, unreadable metadata) is logged and recorded as a failed check naming the error, so
    operators see it, and the checks of the other models go on."""
    try:
        with model_savepoint(session):
            return run_compliance_check(session, settings, model_name, trigger)
    except Exception as exc:
        if not model_fault(exc):
            raise
        error = f"model {model_name} cannot be checked: {type(exc).__name__}: {exc}"[:500]
        log.error("%s", error)
        alias = session.get(Alias, (model_name, CHAMPION))
        check = ComplianceCheck(model_name=model_name, version_id=alias.version_id if alias else "", trigger=trigger,
                                passed=False, report={"error": error})
        session.add(check)
        session.flush()
        return check


def check_all(session: Session, settings: Settings, trigger: str = "schedule") -> list[ComplianceCheck]:
    return [check_model(session, settings, name, trigger)
            for name in session.exec(select(Model.name).order_by(Model.name)).all()]
