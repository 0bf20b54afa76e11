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
