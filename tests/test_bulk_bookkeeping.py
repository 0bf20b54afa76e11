"""A burst's job moves and certifies thousands of requests: in a few statements, with the same results as
one at a time, and a request another transaction moved meanwhile is derived again rather than lost."""

import pytest
from sqlalchemy import event
from sqlmodel import select

from unlearn.settings import Settings
from unlearn.store.db import get_engine, migrate, session_scope
from unlearn.store.models import AuditEvent, DeletionRequest, Model, RequestTarget, UnlearningJob, utcnow
from unlearn.store.transitions import sync_requests

N = 1_100  # over one chunk of 1,000 ids


def _requests(s, n: int, status: str, *, job: UnlearningJob, target_status: str) -> list[str]:
    ids = []
    for _ in range(n):
        r = DeletionRequest(tenant="t", scope_type="samples", status=status, due_at=utcnow())
        s.add(r)
        s.flush()
        s.add(RequestTarget(request_id=r.id, model_name=job.model_name, job_id=job.id, forget_ids=["x"],
                            status=target_status))
        ids.append(r.id)
    return ids


@pytest.fixture()
def database(empty_database, tmp_path):
    migrate(empty_database)
    return Settings(data_dir=tmp_path / "data", database_url=empty_database)


def test_one_sync_moves_thousands_in_a_few_statements_and_each_gets_its_audit_row(database):
    url = database.resolved_database_url
    with session_scope(url) as s:
        s.add(Model(name="m", family="classifier"))
        running, served = UnlearningJob(model_name="m", method="acu", stage="unlearning"), \
            UnlearningJob(model_name="m", method="acu", stage="done")
        s.add_all([running, served])
        s.flush()
        to_running = _requests(s, N, "queued", job=running, target_status="pending")
        to_completed = _requests(s, N, "verifying", job=served, target_status="done")
        canceled = _requests(s, 3, "canceled", job=served, target_status="done")  # final: stays
    statements = []
    listener = lambda *a: statements.append(a[2])  # noqa: E731
    engine = get_engine(url)
    event.listen(engine, "before_cursor_execute", listener)
    try:
        with session_scope(url) as s:
            completed = sync_requests(s, [*to_running, *to_completed, *canceled], actor="worker")
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert completed == sorted(to_completed)
    # per 1,000 ids: the requests, their targets, and one UPDATE and one INSERT per kind of move;
    # one at a time this was four statements a request (8,800 here)
    assert len(statements) <= 20, len(statements)
    with session_scope(url) as s:
        status = dict(s.exec(select(DeletionRequest.id, DeletionRequest.status)).all())
        assert {status[r] for r in to_running} == {"running"}
        assert {status[r] for r in to_completed} == {"completed"}
        assert {status[r] for r in canceled} == {"canceled"}
        done = s.exec(select(DeletionRequest).where(DeletionRequest.id == to_completed[0])).one()
        assert done.completed_at is not None
        moves = s.exec(select(AuditEvent.entity_id, AuditEvent.from_state, AuditEvent.to_state)
                       .where(AuditEvent.entity_type == "request")).all()
        assert sorted(moves) == sorted([(r, "queued", "running") for r in to_running]
                                       + [(r, "verifying", "completed") for r in to_completed])


def test_a_request_moved_by_another_transaction_mid_sync_is_derived_again(database, monkeypatch):
    """Worker B moves one request between worker A's read and A's UPDATE: A's bulk UPDATE does not match
    that row, and A derives it again from what B committed, instead of raising or overwriting it."""
    from unlearn.store import transitions

    url = database.resolved_database_url
    with session_scope(url) as s:
        s.add(Model(name="m", family="classifier"))
        job = UnlearningJob(model_name="m", method="acu", stage="unlearning")
        s.add(job)
        s.flush()
        ids = _requests(s, 5, "queued", job=job, target_status="pending")
    raced = ids[2]
    original = transitions._move_requests

    def racing(session, group, frm, to, **kw):
        with session_scope(url) as other:  # B: this one moves on to verifying and commits first
            other.get(UnlearningJob, job.id)
            r = other.get(DeletionRequest, raced)
            transitions.transition(other, r, "running", actor="worker-b")
        return original(session, group, frm, to, **kw)

    monkeypatch.setattr(transitions, "_move_requests", racing)
    with session_scope(url) as s:
        assert sync_requests(s, ids, actor="worker-a") == []
    with session_scope(url) as s:
        assert {s.get(DeletionRequest, r).status for r in ids} == {"running"}
        moves = s.exec(select(AuditEvent.actor, AuditEvent.entity_id).where(AuditEvent.entity_type == "request")).all()
        assert sorted(moves) == sorted([("worker-a", r) for r in ids if r != raced] + [("worker-b", raced)])
