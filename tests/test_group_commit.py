"""Group commit of deletion requests: concurrent submissions share one transaction, and each still gets the
answer it would have got alone (202, a replay, 409, 422), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import uuid

import httpx
import pytest
from sqlmodel import Session, col, select

from api.app import create_app
from api.auth import Principal, create_api_key
from api.group_commit import GroupCommit
from api.idempotency import Creation, body_digest, create_many
from api.problems import ProblemError
from api.routes.requests import Incoming, write_requests
from api.schemas import Health
from tests.conftest import register
from unlearn.intake import DeletionRequestIn, IntakeError
from unlearn.settings import Settings
from unlearn.store.db import get_engine, migrate, session_scope
from unlearn.store.models import AuditEvent, DeletionRequest, IdempotencyRecord, RequestTarget

SAMPLES = ["digits-0117", "digits-0002"]  # training samples of digits-mlp
CALLER = Principal("key-1", "tenant-a", "submitter")


def _body(sample: str = SAMPLES[0]) -> DeletionRequestIn:
    return DeletionRequestIn(model="digits-mlp", scope={"type": "samples", "sample_ids": [sample]})


@pytest.fixture()
def service(empty_database, tmp_path, zoo_dir):
    settings = Settings(data_dir=tmp_path / "data", database_url=empty_database, batch_window_s=3600.0)
    migrate(settings.resolved_database_url)
    register(settings, zoo_dir)
    return settings


def test_concurrent_submissions_wait_for_the_batch_in_flight_and_share_the_next():
    release, sizes = threading.Event(), []

    def flush(items: list[int]) -> list[object]:
        sizes.append(len(items))
        release.wait(5)
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]

    group = GroupCommit(flush, max_in_flight=1)

    async def main() -> list[object]:
        first = asyncio.ensure_future(group.submit(0))
        await asyncio.sleep(0.05)  # the first batch is committing: the next five gather behind it
        rest = [asyncio.ensure_future(group.submit(i)) for i in range(1, 6)]
        await asyncio.sleep(0.05)
        release.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    outcomes = asyncio.run(main())
    assert sizes == [1, 5]
    assert outcomes[0::2] == [0, 20, 40]
    assert [str(o) for o in outcomes[1::2]] == ["odd 1", "odd 3", "odd 5"]


def test_a_batch_answers_each_request_as_alone_and_commits_only_the_new_ones(service):
    engine = get_engine(service.resolved_database_url)
    old_key = uuid.uuid4().hex
    [(stored, _)] = write_requests(engine, service, [Incoming(CALLER, old_key, _body())])
    fresh, twice = uuid.uuid4().hex, uuid.uuid4().hex
    batch = [Incoming(CALLER, fresh, _body()),
             Incoming(CALLER, old_key, _body()),  # a replay
             Incoming(CALLER, old_key, _body(SAMPLES[1])),  # the same key, another body
             Incoming(CALLER, uuid.uuid4().hex, _body("digits-9999x")),  # not a training sample
             Incoming(CALLER, twice, _body(SAMPLES[1])), Incoming(CALLER, twice, _body(SAMPLES[1]))]
    out = write_requests(engine, service, batch)
    assert out[0][1] is not None and out[0][0]["status"] == "received"
    assert out[1] == (stored, None)
    assert isinstance(out[2], ProblemError) and out[2].status == 422
    assert isinstance(out[3], IntakeError) and "not in the training data" in out[3].detail
    assert out[4][1] is not None and out[5] == (out[4][0], None)  # the second is a replay of the first
    with session_scope(service.resolved_database_url) as s:
        ids = set(s.exec(select(DeletionRequest.id)).all())
        assert ids == {stored["id"], out[0][0]["id"], out[4][0]["id"]}
        targets = s.exec(select(RequestTarget).where(RequestTarget.request_id == out[0][0]["id"])).all()
        assert [(t.model_name, t.forget_ids) for t in targets] == [("digits-mlp", [SAMPLES[0]])]
        events = s.exec(select(AuditEvent).where(col(AuditEvent.entity_id).in_(ids))).all()
        assert sorted(e.entity_id for e in events) == sorted(ids) and {e.actor for e in events} == {CALLER.actor}
        row = s.get(DeletionRequest, out[0][0]["id"])
        assert row.original_due_at == row.due_at and row.status == "received"


def test_a_key_committed_meanwhile_by_another_connection_is_answered_as_it_would_be_alone(service):
    engine = get_engine(service.resolved_database_url)
    body = Health(status="ok", database=True, version="0")
    mine, racing = uuid.uuid4().hex, uuid.uuid4().hex

    def race() -> tuple[Health, list]:  # another connection commits the same key after the batch read the keys
        with Session(engine) as other:
            other.add(IdempotencyRecord(tenant="t", key=racing, body_sha256=body_digest(body), response={"id": "x"}))
            other.commit()
        return body, []

    with Session(engine) as session:
        out = create_many(session, operation="POST /x", status_code=202,
                          items=[Creation("t", mine, body, lambda: (body, [])), Creation("t", racing, body, race)])
    assert out[1] == ({"id": "x"}, None)  # the batch failed on the key; alone, its request is a replay
    assert out[0] == (body.model_dump(mode="json"), body)  # the other one is committed all the same
    with session_scope(service.resolved_database_url) as s:
        assert s.exec(select(IdempotencyRecord.key).where(IdempotencyRecord.key == mine)).all() == [mine]


def test_concurrent_posts_are_each_committed_before_their_202(service):
    with session_scope(service.resolved_database_url) as s:
        key = create_api_key(s, "tenant-a", "submitter")
    app = create_app(service)
    sizes: list[int] = []
    flush = app.state.intake._flush
    app.state.intake._flush = lambda items: (sizes.append(len(items)), flush(items))[1]

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await asyncio.gather(*(client.post(
                "/v1/deletion-requests", json=_body(SAMPLES[i % 2]).model_dump(mode="json"),
                headers={"X-API-Key": key, "Idempotency-Key": f"k{i}"}) for i in range(40)))

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [202] * 40
    assert max(sizes) > 1 and sum(sizes) == 40  # some shared a transaction
    with session_scope(service.resolved_database_url) as s:
        held = set(s.exec(select(DeletionRequest.id)).all())
    assert {r.json()["id"] for r in responses} == held
