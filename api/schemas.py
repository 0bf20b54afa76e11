"""Response bodies of the v1 API (the OpenAPI schema is built from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class JobOut(BaseModel):
    id: str
    model: str
    method: str
    stage: str
    progress: float
    message: str
    attempts: int
    worker: str | None
    error: str | None
    base_version_id: str | None
    result_version_id: str | None
    created_at: datetime
    finished_at: datetime | None


class TargetOut(BaseModel):
    model: str
    samples: int
    status: str
    job_id: str | None
    version_id: str | None


class RequestOut(BaseModel):
    id: str
    tenant: str
    external_id: str | None
    model: str | None
    scope: dict[str, Any]
    kind: str
    method: str
    status: str
    reason: str | None
    received_at: datetime
    due_at: datetime
    days_left: float
    completed_at: datetime | None
    seconds_to_compliance: float | None
    targets: list[TargetOut]
    jobs: list[JobOut]
    verdicts: dict[str, Any]  # version id -> verifier verdict
    links: dict[str, str]


class RequestPage(BaseModel):
    items: list[RequestOut]
    total: int
    page: int
    size: int


class VersionOut(BaseModel):
    id: str
    model: str
    version: int
    parent_id: str | None
    method: str
    status: str
    tainted: bool
    verdict: str | None
    weights_sha256: str
    request_ids: list[str]
    excluded_samples: int
    created_at: datetime
    metrics: dict[str, Any]


class ModelOut(BaseModel):
    name: str
    family: str
    description: str
    champion: VersionOut | None
    versions: int


class RollbackIn(BaseModel):
    version_id: str
    reason: str = "operator rollback"


class Health(BaseModel):
    status: str
    database: bool
    version: str
