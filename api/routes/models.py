"""Models and their versions: the registry's read-outs, verifier reports and plots, and rollback.

No `from __future__ import annotations`: FastAPI reads the dependencies from live annotations.
"""

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from sqlalchemy import func
from sqlmodel import select

from api.deps import CallerDep, OperatorDep, SessionDep, SettingsDep
from api.lookups import known_model, model_version
from api.problems import ERROR_RESPONSES, UPLOAD_RESPONSES, ProblemError, domain_problem
from api.schemas import (
    FieldsQuery,
    ModelDetail,
    ModelIn,
    ModelOut,
    RegisteredOut,
    RollbackIn,
    UploadOut,
    VersionOut,
)
from api.views import version_out
from unlearn import registration, registry
from unlearn.data import records as rec
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


def _detail(session: Any, name: str) -> dict[str, Any]:
    d = registration.describe(session, name)
    return {**d, "champion": version_out(d["champion"]) if d["champion"] is not None else None}


def _within_roots(roots: list[Path], body: ModelIn) -> None:
    """Refuse (403) any path of the body outside the folders the service registers from (symbolic links
    resolved), so that a key cannot make the service read or copy an arbitrary folder."""
    base = (body.recipe or {}).get("base")
    paths = [body.path, body.records, body.holdout, body.reference_dir, body.judge,
             base if isinstance(base, str) else None]
    allowed = [Path(r).resolve() for r in roots]
    for raw in filter(None, paths):
        if not any(Path(raw).resolve().is_relative_to(root) for root in allowed):
            raise ProblemError(403, "Forbidden", f"{raw} is outside the folders this service registers from "
                               "(UNLEARN_REGISTRATION_ROOTS)" if allowed else
                               "this service registers no folders over the API: set UNLEARN_REGISTRATION_ROOTS "
                               "to the shared folders it may read, or use `unlearn model register`")


@router.post("", status_code=201, response_model=RegisteredOut, operation_id="registerModel", tags=["models"],
             responses={200: {"model": RegisteredOut, "description": "the same content was already registered"}})
def register_model(body: ModelIn, response: Response, session: SessionDep, caller: OperatorDep,
                   settings: SettingsDep) -> RegisteredOut:
    """Register a team's model with the records it was trained on (operators). Everything is checked
    first (the records row by row, the weights against the family, one forward pass); a refusal (422)
    keeps nothing. The same content again answers 200 and changes nothing; other content under a
    registered name answers 409."""
    _within_roots(settings.registration_roots, body)
    reg = registration.Registration(
        name=body.name, family=body.family, path=Path(body.path),
        records=Path(body.records) if body.records else None, holdout=Path(body.holdout) if body.holdout else None,
        fields=rec.FieldMap(**body.fields.model_dump()), reference=body.reference, recipe=body.recipe,
        reference_dir=Path(body.reference_dir) if body.reference_dir else None,
        judge_dir=Path(body.judge) if body.judge else None, analytic_head=body.analytic_head,
        description=body.description)
    done = registration.register(session, reg, artifact_root=settings.resolved_artifact_root,
                                 salt=settings.subject_salt, actor=caller.actor)
    session.commit()
    response.status_code = 201 if done.created else 200
    response.headers["Location"] = f"/v1/models/{done.name}"
    return RegisteredOut(**_detail(session, done.name), created=done.created, content_sha256=done.content_sha256,
                         message=done.message())


@router.get("/{name}", response_model=ModelDetail, operation_id="getModel", tags=["models"])
def get_model(name: Text, session: SessionDep, caller: CallerDep) -> ModelDetail:
    """A model: family, counts of training records, holdout records and subjects, reference policy, champion."""
    known_model(session, name)
    return ModelDetail(**_detail(session, name))


_UPLOAD_FORMATS = {"application/x-ndjson": "ndjson", "application/jsonl": "ndjson", "application/json": "ndjson",
                   "application/vnd.apache.parquet": "parquet", "application/x-parquet": "parquet"}


@router.post("/{name}/records", response_model=UploadOut, operation_id="uploadModelRecords", tags=["models"],
             responses=UPLOAD_RESPONSES,
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/x-ndjson": {"schema": {"type": "string"}},
                 "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}}}}})
async def upload_records(name: Text, request: Request, caller: OperatorDep, settings: SettingsDep,
                         session: SessionDep, fields: Annotated[FieldsQuery, Query()],
                         batch: Annotated[int, Query(ge=0, lt=1_000_000, description="this batch's number")] = 0,
                         holdout: Annotated[bool, Query(description="the batch's rows were never trained on "
                                                                    "(unless a split column says otherwise)")] = False
                         ) -> UploadOut:
    """Upload one batch of a model's training records before registering it (operators): NDJSON or
    Parquet, the columns named by the query's field names. Each batch is checked row by row and kept
    with its subjects hashed; sending a batch number again replaces that batch, so an interrupted upload
    resumes where it stopped, and a record id sent twice must carry the same content. Register with
    POST /v1/models without `records` to use the uploaded batches."""
    if session.get(Model, name) is not None:
        raise ProblemError(409, "Conflict", f"model {name!r} is registered: its records were fixed at registration")
    kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    suffix = _UPLOAD_FORMATS.get(kind)
    if suffix is None:
        raise ProblemError(415, "Unsupported Media Type",
                           f"records come as application/x-ndjson or application/vnd.apache.parquet, not {kind!r}")
    body = await request.body()
    if len(body) > settings.max_records_batch_bytes:
        raise ProblemError(413, "Payload Too Large", f"a batch is limited to {settings.max_records_batch_bytes} bytes")
    try:
        table = rec.table_from_bytes(body, suffix, source=f"batch {batch}")
    except rec.RecordError as exc:
        raise ProblemError(422, "Invalid records", str(exc)) from None
    out = registration.save_upload(settings.resolved_artifact_root, name, batch, table,
                                   rec.FieldMap(**fields.model_dump()), salt=settings.subject_salt,
                                   split="holdout" if holdout else "train")
    return UploadOut(**out)


@router.get("/{name}/records", response_model=UploadOut, operation_id="getModelRecordUploads", tags=["models"])
def upload_status(name: Text, caller: OperatorDep, settings: SettingsDep) -> UploadOut:
    """The record batches uploaded so far for a model not yet registered: resume after the last one."""
    return UploadOut(**registration.upload_status(settings.resolved_artifact_root, name))


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
