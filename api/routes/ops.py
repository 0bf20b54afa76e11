"""Liveness and Prometheus metrics, unauthenticated, for the orchestrator and the scraper.

No `from __future__ import annotations`: FastAPI reads the dependencies from live annotations.
"""

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from sqlmodel import select

import unlearn
from api.deps import SessionDep, SettingsDep
from api.schemas import Health
from unlearn.metrics import render_metrics

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=Health, operation_id="health")
def health(session: SessionDep) -> Health:
    try:
        session.exec(select(1)).one()
        ok = True
    except Exception:  # any database failure reads as degraded, never as a 500
        ok = False
    return Health(status="ok" if ok else "degraded", database=ok, version=unlearn.__version__)


@router.get("/metrics", response_class=PlainTextResponse, operation_id="metrics")
def metrics(session: SessionDep, settings: SettingsDep) -> PlainTextResponse:
    body, content_type = render_metrics(session, settings)
    return PlainTextResponse(body, media_type=content_type)
