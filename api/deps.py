"""The dependencies every router declares, as typed aliases: the settings, a database session,
the caller's key, and the hooks to the workers.

The per-app state they read (settings, engine, key cache, rate limiter, coalescing scheduler, job
sender) is set on `app.state` by `api.app.create_app`, so that routers stay plain module-level code.
No `from __future__ import annotations`: FastAPI reads these aliases from live annotations.
"""

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session

from api.auth import Principal, api_key_header, authenticate
from api.problems import ProblemError
from api.scheduler import CoalesceScheduler
from unlearn.settings import Settings


# Plain reads of `app.state` are `async def`: FastAPI runs a plain `def` dependency on a worker thread.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """One session per HTTP request, rolled back when the route raises (a route commits its own work)."""
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        try:
            yield session
        except Exception:
            session.rollback()
            raise


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


async def get_caller(request: Request, key: Annotated[str | None, Depends(api_key_header)]) -> Principal:
    """Any valid key, counted against its rate limit. Raises ProblemError 401 (no or unknown key),
    403 (a cookie without X-Requested-With on a write) or 429 (over the limit). One trip to a worker
    thread for both (the key's lookup, on a cache miss, and the shared counter are blocking I/O)."""
    state = request.app.state

    def check() -> Principal:
        with Session(state.engine) as session:  # connects only on a cache miss
            caller = authenticate(session, request, key, state.keys)
        state.rate_limiter.check(caller.key_id)
        return caller

    return await run_in_threadpool(check)


CallerDep = Annotated[Principal, Depends(get_caller)]


def get_operator(caller: CallerDep) -> Principal:
    """An operator's key; a submitter's gets ProblemError 403."""
    if not caller.is_operator:
        raise ProblemError(403, "Forbidden", "this action needs an operator key")
    return caller


OperatorDep = Annotated[Principal, Depends(get_operator)]


async def get_coalescer(request: Request) -> CoalesceScheduler:
    return request.app.state.coalescer


async def get_job_sender(request: Request) -> Callable[[list[str]], None]:
    return request.app.state.enqueue_jobs


CoalescerDep = Annotated[CoalesceScheduler, Depends(get_coalescer)]
JobSenderDep = Annotated[Callable[[list[str]], None], Depends(get_job_sender)]
