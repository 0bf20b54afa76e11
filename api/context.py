"""What the routers of the API share: settings, the database session and the caller's identity
as FastAPI dependencies, the hooks to the workers, and lookups that hide other tenants' rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlmodel import Session

from api.auth import Principal
from api.problems import ProblemError
from unlearn.settings import Settings
from unlearn.store.models import DeletionRequest, Model


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    db: Callable[..., Iterator[Session]]  # dependency: one session per request
    principal: Callable[..., Principal]  # dependency: any valid key
    operator: Callable[..., Principal]  # dependency: an operator key
    poke_coalescer: Callable[[], None]  # new work may be waiting for a batch
    enqueue_jobs: Callable[[list[str]], None]  # send these job ids to the workers


def visible_request(session: Session, p: Principal, request_id: str) -> DeletionRequest:
    r = session.get(DeletionRequest, request_id)
    if r is None or (not p.is_operator and r.tenant != p.tenant):  # other tenants' requests do not exist
        raise ProblemError(404, "Not Found", f"no deletion request {request_id!r}")
    return r


def known_model(session: Session, name: str) -> Model:
    m = session.get(Model, name)
    if m is None:
        raise ProblemError(404, "Not Found", f"unknown model {name!r}")
    return m
