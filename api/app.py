"""FastAPI application: deletion requests in, status and models out. `create_app(settings)`.

`create_app` only assembles: the per-app state on `app.state` (read by `api.deps`), the error map,
the body-size guard and one router per resource from `api.routes`.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Receive, Scope, Send

import unlearn
from api import problems
from api.auth import KeyCache, RateLimiter
from api.openapi import build_openapi
from api.routes import (
    certificates,
    compliance,
    dashboard,
    docs,
    jobs,
    models,
    ops,
    overview,
    requests,
    workers,
)
from api.scheduler import CoalesceScheduler
from unlearn.families import family_names, get_family
from unlearn.methods import register_method
from unlearn.settings import Settings
from unlearn.store.db import get_engine

ROUTERS = (requests, models, certificates, jobs, workers, overview, compliance, dashboard, ops, docs)


class BodyLimit:
    """Refuse a body over `settings.max_body_bytes` (413) before it is read, by its Content-Length.
    A plain ASGI middleware: Starlette's `BaseHTTPMiddleware` costs a task and a stream per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            settings = request.app.state.settings
            # a batch of training records and a bulk request's list are the bodies that are data, not commands
            path = scope["path"]
            is_records = scope["method"] == "POST" and path.startswith("/v1/models/") and path.endswith("/records")
            is_bulk = scope["method"] == "POST" and path == "/v1/deletion-requests/bulk"
            limit = settings.max_records_batch_bytes if is_records else \
                settings.max_bulk_body_bytes if is_bulk else settings.max_body_bytes
            length = request.headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                response = problems.problem_response(request, 413, "Payload Too Large",
                                                     f"request bodies are limited to {limit} bytes")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(settings: Settings, *, schedule_coalesce: Callable[[float], None] | None = None,
               enqueue_jobs: Callable[[list[str]], None] | None = None) -> FastAPI:
    """`schedule_coalesce(delay_s)` asks the workers to batch pending requests after `delay_s`;
    `enqueue_jobs(ids)` sends jobs an operator retried (without it the reconciler sends them later)."""
    for name, target in settings.extra_methods.items():  # intake must know methods from outside the package
        register_method(name, target)
    for family in family_names():  # imported now (transformers, diffusers: seconds), not in a request's time
        get_family(family)
    app = FastAPI(title="unlearn", version=unlearn.__version__,
                  description="Deletion requests for trained models: forget, verify, promote, audit.",
                  docs_url=None, redoc_url=None)  # api.routes.docs serves /docs from the package; no CDN
    app.state.settings = settings
    settings.install_artifact_store()  # registrations publish their versions to the store, when there is one
    app.state.engine = get_engine(settings.resolved_database_url)
    # Counted in the broker's Redis in production: every API process shares one limit.
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute,
                                         settings.broker_url if settings.broker_url.startswith("redis") else "memory://")
    app.state.keys = KeyCache()
    app.state.intake = requests.intake_writer(app.state.engine, settings)
    app.state.coalescer = CoalesceScheduler(schedule_coalesce or (lambda _delay: None), settings.batch_window_s)
    app.state.enqueue_jobs = enqueue_jobs or (lambda _ids: None)
    problems.install(app)
    app.add_middleware(BodyLimit)
    for module in ROUTERS:
        app.include_router(module.router)
    app.openapi = lambda: build_openapi(app)
    return app
