"""Continuous compliance, for operators: the latest check per model, regressions and the requests
they reopened, and a check run on demand.

No `from __future__ import annotations`: FastAPI reads the dependencies from live annotations.
"""

from fastapi import APIRouter
from sqlmodel import col, select

from api.deps import OperatorDep, SessionDep, SettingsDep
from api.lookups import known_model
from api.problems import ERROR_RESPONSES, ProblemError
from api.schemas import ComplianceOut, ComplianceSummary
from api.views import compliance_out
from unlearn.intake import Text
from unlearn.store.models import ComplianceCheck, DeletionRequest, Model
from unlearn.store.transitions import audit

router = APIRouter(responses=ERROR_RESPONSES, tags=["operator"])


@router.get("/v1/compliance", response_model=ComplianceSummary, operation_id="complianceSummary")
def compliance_summary(session: SessionDep, caller: OperatorDep, settings: SettingsDep) -> ComplianceSummary:
    latest = []
    for m in session.exec(select(Model).order_by(Model.name)).all():
        c = session.exec(select(ComplianceCheck).where(ComplianceCheck.model_name == m.name)
                         .order_by(col(ComplianceCheck.checked_at).desc())).first()
        if c is not None:
            latest.append(compliance_out(c))
    regressions = session.exec(select(ComplianceCheck).where(ComplianceCheck.regression == True)  # noqa: E712
                               .order_by(col(ComplianceCheck.checked_at).desc()).limit(50)).all()
    reopened = []
    for c in regressions:
        for rid in c.reopened_request_ids:
            r = session.get(DeletionRequest, rid)
            reopened.append({"request_id": rid, "model": c.model_name, "check_id": c.id,
                             "status": r.status if r else None, "reopened_at": c.checked_at})
    return ComplianceSummary(latest=latest, regressions=[compliance_out(c) for c in regressions], reopened=reopened,
                             check_interval_s=settings.compliance_interval_s)


@router.post("/v1/models/{name}/compliance-check", response_model=ComplianceOut, operation_id="runComplianceCheck")
def compliance_check(name: Text, session: SessionDep, caller: OperatorDep, settings: SettingsDep) -> ComplianceOut:
    known_model(session, name)
    try:  # imported per call: a build without the compliance module answers 501, not a failed start
        from unlearn.compliance import run_compliance_check
    except ImportError:
        raise ProblemError(501, "Not Implemented", "continuous compliance checks are not available in "
                           "this build") from None
    check = run_compliance_check(session, settings, name, trigger="operator")
    audit(session, actor=caller.actor, entity_type="compliance", entity_id=check.id,
          to_state="passed" if check.passed else "failed", reason="operator re-ran the compliance check",
          data={"model": name, "version_id": check.version_id, "regression": check.regression})
    session.commit()
    return compliance_out(check)
