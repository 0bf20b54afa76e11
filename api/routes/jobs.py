"""Unlearning jobs, for operators: the list and the retry of a failed job.

No `from __future__ import annotations`: FastAPI reads the dependencies from live annotations.
"""

from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel import col, select

from api.deps import JobSenderDep, OperatorDep, SessionDep
from api.problems import ERROR_RESPONSES, ProblemError, domain_problem
from api.scheduler import send_after_commit
from api.schemas import JobOut
from api.views import job_out
from unlearn.intake import Text, text
from unlearn.operations import retry_job
from unlearn.store.models import UnlearningJob
from unlearn.store.transitions import IllegalTransition

router = APIRouter(prefix="/v1/jobs", responses=ERROR_RESPONSES, tags=["operator"])


@router.get("", response_model=list[JobOut], operation_id="listJobs")
def list_jobs(session: SessionDep, caller: OperatorDep,
              stage: Annotated[list[Text] | None, Query()] = None,
              model: Annotated[text(max_length=64) | None, Query()] = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[JobOut]:
    where = []
    if stage:
        where.append(col(UnlearningJob.stage).in_(stage))
    if model:
        where.append(UnlearningJob.model_name == model)
    rows = session.exec(select(UnlearningJob).where(*where)
                        .order_by(col(UnlearningJob.created_at).desc()).limit(limit)).all()
    return [job_out(j) for j in rows]


@router.post("/{job_id}/retry", response_model=JobOut, operation_id="retryJob")
def retry(job_id: Text, session: SessionDep, caller: OperatorDep, send_jobs: JobSenderDep) -> JobOut:
    job = session.get(UnlearningJob, job_id)
    if job is None:
        raise ProblemError(404, "Not Found", f"no job {job_id!r}")
    try:
        retry_job(session, job, actor=caller.actor)
    except IllegalTransition as exc:  # the error map's status, with what a retry needs
        raise domain_problem(exc, detail=f"{exc}; only failed jobs can be retried") from None
    session.commit()
    send_after_commit(lambda: send_jobs([job.id]), f"retried job {job.id}")
    return job_out(job)
