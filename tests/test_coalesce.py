from sqlmodel import select

from unlearn.coalesce import coalesce
from unlearn.intake import DeletionRequestIn, submit
from unlearn.store.db import session_scope
from unlearn.store.models import DeletionRequest, RequestTarget, UnlearningJob


def _submit(settings, **body):
    with session_scope(settings.resolved_database_url) as s:
        return submit(s, settings, "t1", DeletionRequestIn(**body))[0].id


def test_pending_requests_for_one_model_become_one_job(digits_service):
    settings = digits_service
    ids = [_submit(settings, model="digits-mlp", scope={"type": "subject", "subject": f"subject-{i:04d}"})
           for i in (1, 2, 3, 5)]
    with session_scope(settings.resolved_database_url) as s:
        job_ids = coalesce(s, settings)
    assert len(job_ids) == 1
    with session_scope(settings.resolved_database_url) as s:
        job = s.get(UnlearningJob, job_ids[0])
        assert job.method == "retrain" and job.stage == "queued"
        targets = s.exec(select(RequestTarget).where(RequestTarget.job_id == job.id)).all()
        assert sorted(t.request_id for t in targets) == sorted(ids)
        assert all(s.get(DeletionRequest, i).status == "queued" for i in ids)
        # A second pass finds nothing left to batch.
        assert coalesce(s, settings) == []


def test_class_removal_and_subject_requests_batch_separately(digits_service):
    settings = digits_service
    _submit(settings, model="digits-mlp", scope={"type": "subject", "subject": "subject-0001"})
    _submit(settings, model="digits-mlp", scope={"type": "class", "label": 4})
    _submit(settings, model="digits-mlp", scope={"type": "class", "label": 4})
    with session_scope(settings.resolved_database_url) as s:
        jobs = [s.get(UnlearningJob, j) for j in coalesce(s, settings)]
    assert sorted(j.scope["type"] for j in jobs) == ["class", "samples"]


def test_requests_inside_the_batch_window_wait(digits_service):
    settings = digits_service.model_copy(update={"batch_window_s": 3600})
    _submit(settings, model="digits-mlp", scope={"type": "subject", "subject": "subject-0001"})
    with session_scope(settings.resolved_database_url) as s:
        assert coalesce(s, settings) == []
        assert len(coalesce(s, settings, force=True)) == 1
