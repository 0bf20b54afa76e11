"""Rows a route reads by id, answering 404 problem+json when the caller may not see them: another
tenant's request does not exist for a submitter."""

from __future__ import annotations

from sqlmodel import Session

from api.auth import Principal
from api.problems import ProblemError
from unlearn.store.models import DeletionRequest, Model, ModelVersion


def visible_request(session: Session, caller: Principal, request_id: str) -> DeletionRequest:
    """The request, if it is the caller's tenant's or the caller is an operator; else ProblemError 404."""
    r = session.get(DeletionRequest, request_id)
    if r is None or (not caller.is_operator and r.tenant != caller.tenant):
        raise ProblemError(404, "Not Found", f"no deletion request {request_id!r}")
    return r


def known_model(session: Session, name: str) -> Model:
    """The registered model `name`; else ProblemError 404."""
    m = session.get(Model, name)
    if m is None:
        raise ProblemError(404, "Not Found", f"unknown model {name!r}")
    return m


def model_version(session: Session, name: str, version_id: str) -> ModelVersion:
    """Version `version_id` of model `name`; else ProblemError 404 (unknown model or version)."""
    known_model(session, name)
    v = session.get(ModelVersion, version_id)
    if v is None or v.model_name != name:
        raise ProblemError(404, "Not Found", f"model {name!r} has no version {version_id!r}")
    return v
