"""ASGI entry for production servers: `uvicorn --factory cli.asgi:build --workers N`.

Settings come from the environment (UNLEARN_*); coalescing runs are sent to the broker."""

from __future__ import annotations

from fastapi import FastAPI

from api.app import create_app
from unlearn.settings import Settings
from workers.celery_app import job_sender, make_celery


def build() -> FastAPI:
    settings = Settings()
    if settings.embedded:
        raise RuntimeError("cli.asgi serves the production layout: set UNLEARN_BROKER_URL to a redis:// URL "
                           "(or use `unlearn serve` for the embedded worker)")
    settings.check_subject_salt()
    celery = make_celery(settings)
    return create_app(settings, schedule_coalesce=lambda delay: celery.send_task(
        "ops.coalesce", kwargs={"force": True}, countdown=delay), enqueue_jobs=job_sender(celery))
