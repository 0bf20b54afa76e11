"""The API's shared plumbing: who may set method parameters, the one map from domain errors to
problem+json, idempotent creation under a race, and the session a failed route leaves behind."""

from __future__ import annotations

import uuid

import pytest
from sqlmodel import Session, select

from api.deps import SessionDep
from api.idempotency import create_once
from api.problems import ProblemError, domain_problem
from api.schemas import Health
from tests.conftest import post_request
from tests.test_api import SUBJECT, _problem
from unlearn.intake import IntakeError
from unlearn.registry import RegistryError, TaintedVersion, UnknownVersion
from unlearn.store.db import get_engine, session_scope
from unlearn.store.models import AuditEvent, DeletionRequest, IdempotencyRecord
from unlearn.store.transitions import IllegalTransition, audit


def test_only_operators_may_set_method_parameters(api):
    body = dict(SUBJECT, params={"epochs": 1})
    refused = _problem(post_request(api, body, key="a", idem="p1"), 403)
    assert refused["detail"] == "only operators may set method parameters"
    with session_scope(api.settings.resolved_database_url) as s:
        assert s.exec(select(DeletionRequest)).all() == [] and s.exec(select(IdempotencyRecord)).all() == []
    assert post_request(api, dict(SUBJECT, params={}), key="a", idem="p1").status_code == 202  # key not spent
    by_operator = post_request(api, body, key="op")
    assert by_operator.status_code != 403, by_operator.text  # intake may still refuse the values (422)


@pytest.mark.parametrize("exc,status,title", [
    (TaintedVersion("version v of m is tainted"), 409, "Tainted version"),
    (UnknownVersion("model 'm' has no version 'x'"), 404, "Not Found"),
    (RegistryError("model 'm' has no champion"), 409, "Conflict"),
    (IllegalTransition("request r: running → canceled is not allowed"), 409, "Conflict"),
    (IntakeError("scope has 9 samples; the limit is 3", 413, "Scope too large"), 413, "Scope too large"),
])
def test_domain_errors_map_to_one_status_each(exc, status, title):
    problem = domain_problem(exc)
    assert (problem.status, problem.title, problem.detail) == (status, title, str(exc))
    assert domain_problem(exc, title="Refused").title == "Refused"
    with pytest.raises(TypeError):
        domain_problem(ValueError("not a domain error"))


def test_rollback_to_an_unknown_version_is_404_worded_as_a_refused_rollback(api):
    resp = api.post("/v1/models/digits-mlp/rollback", json={"version_id": "nope"},
                    headers={"X-API-Key": api.keys["op"]})
    body = _problem(resp, 404)
    assert body["title"] == "Rollback refused" and "has no version" in body["detail"]


def test_a_route_that_raises_leaves_nothing_behind_and_answers_from_the_error_map(api):
    def half_done(session: SessionDep) -> Health:
        audit(session, actor="test", entity_type="request", entity_id="r1", to_state="queued")
        session.flush()
        raise IllegalTransition("request r1: received → completed is not allowed")

    api.app.add_api_route("/test/half-done", half_done, methods=["POST"])
    body = _problem(api.post("/test/half-done"), 409)
    assert body["title"] == "Conflict" and "not allowed" in body["detail"]
    with session_scope(api.settings.resolved_database_url) as s:
        assert s.exec(select(AuditEvent).where(AuditEvent.actor == "test")).all() == []


def test_the_same_key_racing_in_from_another_connection_is_a_409(digits_service):
    engine = get_engine(digits_service.resolved_database_url)
    key = uuid.uuid4().hex

    def create() -> Health:  # the other connection commits the same key first
        with Session(engine) as other:
            other.add(IdempotencyRecord(tenant="t", key=key, body_sha256="0" * 64, response={"id": "x"}))
            other.commit()
        return Health(status="ok", database=True, version="0")

    with Session(engine) as session, pytest.raises(ProblemError) as raised:
        create_once(session, operation="POST /x", tenant="t", key=key, body=Health(status="ok", database=True,
                    version="0"), create=create, status_code=202)
    assert raised.value.status == 409 and "being processed" in raised.value.detail
