"""Models and their versions: the registry's read-outs, verifier reports and plots, and rollback.

No `from __future__ import annotations`: FastAPI reads the dependencies from live annotations.
"""

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse
from sqlalchemy import func
from sqlmodel import select

from api.deps import CallerDep, OperatorDep, SessionDep, SettingsDep
from api.lookups import known_model, model_version
from api.problems import ERROR_RESPONSES, ProblemError, domain_problem
from api.schemas import ModelOut, RollbackIn, VersionOut
from api.views import version_out
from unlearn import registry
from unlearn.intake import Text
from unlearn.store.models import Model, ModelVersion

router = APIRouter(prefix="/v1/models", responses=ERROR_RESPONSES)


@router.get("", response_model=list[ModelOut], operation_id="listModels", tags=["models"])
def list_models(session: SessionDep, caller: CallerDep) -> list[ModelOut]:
    out = []
    for m in session.exec(select(Model).order_by(Model.name)).all():
        n = session.exec(select(func.count()).select_from(ModelVersion).where(ModelVersion.model_name == m.name)).one()
        try:
            champ = version_out(registry.champion(session, m.name))
        except registry.RegistryError:  # no champion yet: listed without one
            champ = None
        out.append(ModelOut(name=m.name, family=m.family, description=m.description, champion=champ, versions=n))
    return out


@router.get("/{name}/versions", response_model=list[VersionOut], operation_id="listModelVersions", tags=["models"])
def list_versions(name: Text, session: SessionDep, caller: CallerDep) -> list[VersionOut]:
    known_model(session, name)
    rows = session.exec(select(ModelVersion).where(ModelVersion.model_name == name)
                        .order_by(ModelVersion.version)).all()
    return [version_out(v) for v in rows]


@router.post("/{name}/rollback", response_model=VersionOut, operation_id="rollbackModel", tags=["models"])
def rollback(name: Text, body: RollbackIn, session: SessionDep, caller: OperatorDep) -> VersionOut:
    known_model(session, name)
    try:
        v = registry.rollback(session, name, body.version_id, actor=caller.actor, reason=body.reason)
    except registry.TaintedVersion:
        raise
    except registry.ArtifactIntegrityError as exc:
        session.commit()  # the target was quarantined: that stands although the rollback is refused
        raise domain_problem(exc, title="Rollback refused") from None
    except registry.RegistryError as exc:  # the error map's status, worded as this route's refusal
        raise domain_problem(exc, title="Rollback refused") from None
    session.commit()
    return version_out(v)


@router.get("/{name}/versions/{version_id}/report", operation_id="getVersionReport", tags=["models"])
def version_report(name: Text, version_id: Text, session: SessionDep, caller: CallerDep) -> dict[str, Any]:
    v = model_version(session, name, version_id)
    report = dict(v.metrics)
    base = f"/v1/models/{name}/versions/{v.id}/report/plots"
    report["plots"] = {k: f"{base}/{k}" for k in (v.metrics.get("plots") or {})}
    return {"model": name, "version_id": v.id, "version": v.version, "method": v.method, "status": v.status,
            "tainted": v.tainted, "report": report}


@router.get("/{name}/versions/{version_id}/report/plots/{plot}", response_class=FileResponse,
            operation_id="getVersionReportPlot", tags=["models"])
def version_plot(name: Text, version_id: Text, plot: Text, session: SessionDep, caller: CallerDep,
                 settings: SettingsDep) -> FileResponse:
    v = model_version(session, name, version_id)
    path = (v.metrics.get("plots") or {}).get(plot)
    root = settings.resolved_artifact_root.resolve()
    if not isinstance(path, str):
        raise ProblemError(404, "Not Found", f"version {v.id} has no plot {plot!r}")
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(root) or resolved.suffix.lower() != ".png" or not resolved.is_file():
        raise ProblemError(404, "Not Found", f"plot {plot!r} of version {v.id} is not available")
    return FileResponse(resolved, media_type="image/png")
