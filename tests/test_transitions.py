import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlmodel import select

from unlearn.store.db import session_scope
from unlearn.store.models import AuditEvent, DeletionRequest, UnlearningJob, utcnow
from unlearn.store.transitions import (
    JOB_TRANSITIONS,
    REQUEST_TRANSITIONS,
    IllegalTransition,
    transition,
)

REQUEST_STATES = sorted(REQUEST_TRANSITIONS)


def _request(**kw) -> DeletionRequest:
    return DeletionRequest(tenant="t", scope_type="samples", due_at=utcnow(), **kw)


def test_happy_path_writes_one_audit_event_per_step(settings):
    with session_scope(settings.resolved_database_url) as s:
        r = _request()
        s.add(r)
        s.flush()
        for to in ("queued", "running", "verifying", "completed"):
            transition(s, r, to, actor="test")
        assert r.completed_at is not None
        events = s.exec(select(AuditEvent).where(AuditEvent.entity_id == r.id).order_by(AuditEvent.id)).all()
        assert [(e.from_state, e.to_state) for e in events] == [
            ("received", "queued"), ("queued", "running"), ("running", "verifying"), ("verifying", "completed")]


@pytest.mark.parametrize("frm,to", [("running", "canceled"), ("completed", "running"), ("canceled", "queued"),
                                    ("received", "verifying"), ("verifying", "canceled")])
def test_illegal_request_moves_are_refused_and_leave_no_trace(settings, frm, to):
    with session_scope(settings.resolved_database_url) as s:
        r = _request(status=frm)
        s.add(r)
        s.flush()
        with pytest.raises(IllegalTransition):
            transition(s, r, to, actor="test")
        assert r.status == frm
        assert s.exec(select(AuditEvent).where(AuditEvent.entity_id == r.id)).all() == []


def test_canceling_is_only_possible_before_running():
    can_cancel = {s for s, nxt in REQUEST_TRANSITIONS.items() if "canceled" in nxt}
    assert can_cancel == {"pending_review", "received", "queued"}


@hsettings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(REQUEST_STATES), st.sampled_from(sorted(JOB_TRANSITIONS))), max_size=12))
def test_any_sequence_of_moves_follows_the_tables(moves):
    r = _request()
    j = UnlearningJob(model_name="m", method="retrain")
    from unittest.mock import MagicMock

    session = MagicMock()
    for to_r, to_j in moves:
        for entity, attr, table, to in ((r, "status", REQUEST_TRANSITIONS, to_r), (j, "stage", JOB_TRANSITIONS, to_j)):
            before = getattr(entity, attr)
            try:
                transition(session, entity, to, actor="prop")
                assert to in table[before]
                assert getattr(entity, attr) == to
            except IllegalTransition:
                assert to not in table[before]
                assert getattr(entity, attr) == before


# ---------------------------------------------------------------- derived request status

def _two_model_request(s):
    from unlearn.store.models import Model, RequestTarget

    for name in ("model-a", "model-b"):
        if s.get(Model, name) is None:
            s.add(Model(name=name, family="classifier"))
    r = _request(status="queued")
    jobs = [UnlearningJob(model_name=m, method="retrain") for m in ("model-a", "model-b")]
    s.add_all([r, *jobs])
    s.flush()
    targets = [RequestTarget(request_id=r.id, model_name=j.model_name, job_id=j.id, forget_ids=["x"]) for j in jobs]
    s.add_all(targets)
    s.flush()
    return r, jobs, targets


def test_a_request_on_two_models_follows_its_jobs_as_they_interleave(settings):
    from unlearn.store.transitions import sync_requests

    with session_scope(settings.resolved_database_url) as s:
        r, (a, b), (ta, tb) = _two_model_request(s)
        seen = []

        def step(job=None, stage=None, target=None, target_status=None):
            if job is not None:
                job.stage = stage
                s.add(job)
            if target is not None:
                target.status = target_status
                s.add(target)
            sync_requests(s, [r.id], actor="test")
            seen.append(s.get(DeletionRequest, r.id).status)

        step(a, "unlearning")
        step(a, "verifying")
        step(b, "unlearning")  # still verifying: the furthest job decides
        step(target=ta, target_status="done")  # A served, B unlearning: back to running, not stuck
        step(b, "verifying")
        step(target=tb, target_status="done")
        assert seen == ["running", "verifying", "verifying", "running", "verifying", "completed"]


def test_an_operator_retry_of_one_models_failed_job_while_another_runs(settings):
    from unlearn.operations import retry_job
    from unlearn.store.transitions import sync_requests

    with session_scope(settings.resolved_database_url) as s:
        r, (a, b), (ta, tb) = _two_model_request(s)
        b.stage = "unlearning"
        a.stage, ta.status = "failed", "failed"
        s.add_all([a, b, ta])
        sync_requests(s, [r.id], actor="test")
        assert s.get(DeletionRequest, r.id).status == "failed"
        retry_job(s, a, actor="op")
        assert s.get(DeletionRequest, r.id).status == "running"  # B is under way; A waits queued


def test_a_partly_served_request_cannot_be_canceled(settings):
    from unlearn.operations import cancel_request
    from unlearn.store.transitions import sync_requests

    with session_scope(settings.resolved_database_url) as s:
        r, _, (ta, _tb) = _two_model_request(s)
        ta.status = "done"
        s.add(ta)
        sync_requests(s, [r.id], actor="test")
        request = s.get(DeletionRequest, r.id)
        assert request.status == "running"
        with pytest.raises(IllegalTransition):
            cancel_request(s, request, actor="op")


def test_syncing_a_request_another_transaction_moved_derives_again_instead_of_failing(settings):
    from unlearn.store.transitions import sync_requests

    url = settings.resolved_database_url
    with session_scope(url) as s:
        r, (a, _b), _ = _two_model_request(s)
        a.stage = "unlearning"
        s.add(a)
        rid = r.id
    with session_scope(url) as stale:
        stale.get(DeletionRequest, rid)  # loaded while still queued
        with session_scope(url) as other:
            sync_requests(other, [rid], actor="worker-b")  # queued → running, committed first
        sync_requests(stale, [rid], actor="worker-a")  # must not raise Conflict: it re-reads and agrees
        assert stale.get(DeletionRequest, rid).status == "running"
    with session_scope(url) as s:
        moves = s.exec(select(AuditEvent).where(AuditEvent.entity_id == rid)).all()
        assert [(e.from_state, e.to_state) for e in moves] == [("queued", "running")]
