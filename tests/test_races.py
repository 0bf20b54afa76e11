"""Conflicting operator actions sent together: exactly one wins, the other gets 409, nothing is left half-done.

Runs a real uvicorn server on SQLite and on PostgreSQL; each pair of actions is released at once
from two threads."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlmodel import select

from api.app import create_app
from api.auth import create_api_key
from tests.conftest import register
from tests.procs import app_server
from unlearn.settings import Settings
from unlearn.store.db import migrate, session_scope
from unlearn.store.models import AuditEvent, DeletionRequest, RequestTarget, TrainingRecord, UnlearningJob

pytestmark = pytest.mark.integration

PAIRS = 50
# Each pair: two decisions that cannot both happen, in either order (approve then cancel could).
# What the winner leaves behind, request and targets.
ACTIONS = [("approve", "deny"), ("deny", "cancel"), ("cancel", "cancel")]
AFTER = {"approve": ("received", "pending"), "deny": ("rejected", "rejected"), "cancel": ("canceled", "canceled")}


@pytest.fixture()
def service(empty_database, tmp_path, zoo_dir):
    """On SQLite and on PostgreSQL (`empty_database`), digits-mlp registered, every request held for review."""
    s = Settings(data_dir=tmp_path / "data", database_url=empty_database, review_required_for=["samples"],
                 batch_window_s=3600.0, rate_limit_per_minute=100_000)
    migrate(s.resolved_database_url)
    register(s, zoo_dir)
    return s


@pytest.fixture()
def server(service):
    with session_scope(service.resolved_database_url) as s:
        keys = {"sub": create_api_key(s, "tenant-a", "submitter"), "op": create_api_key(s, "ops", "operator")}
    with app_server(create_app(service)) as url:
        yield url, keys, service


def _act(base: str, key: str, rid: str, action: str, gate: threading.Barrier) -> int:
    body = None if action == "cancel" else {"reason": f"race test: {action}"}
    gate.wait(timeout=30)
    return httpx.post(f"{base}/v1/deletion-requests/{rid}/{action}", json=body,
                      headers={"X-API-Key": key}, timeout=60).status_code


def test_conflicting_operator_actions_have_one_winner_each(server):
    base, keys, settings = server
    with session_scope(settings.resolved_database_url) as s:
        ids = sorted(s.exec(select(TrainingRecord.sample_id).where(TrainingRecord.model_name == "digits-mlp",
                                                                    TrainingRecord.split == "train")).all())[:PAIRS]
    rids = []
    for sid in ids:
        r = httpx.post(f"{base}/v1/deletion-requests", json={"model": "digits-mlp", "scope": {
            "type": "samples", "sample_ids": [sid]}}, headers={"X-API-Key": keys["sub"],
                                                            "Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 202 and r.json()["status"] == "pending_review", r.text
        rids.append(r.json()["id"])

    pairs = [(rid, ACTIONS[i % len(ACTIONS)]) for i, rid in enumerate(rids)]
    gates = [threading.Barrier(2) for _ in pairs]
    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [(pool.submit(_act, base, keys["op"], rid, a, gate), pool.submit(_act, base, keys["op"], rid, b, gate))
                   for (rid, (a, b)), gate in zip(pairs, gates, strict=True)]
        codes = [(fa.result(), fb.result()) for fa, fb in futures]

    assert all(sorted(c) == [200, 409] for c in codes), Counter(codes)
    with session_scope(settings.resolved_database_url) as s:
        for (rid, (a, b)), (ca, _) in zip(pairs, codes, strict=True):
            winner = a if ca == 200 else b
            request = s.get(DeletionRequest, rid)
            targets = s.exec(select(RequestTarget).where(RequestTarget.request_id == rid)).all()
            status, target_status = AFTER[winner]
            assert request.status == status, (rid, winner)
            assert [t.status for t in targets] == [target_status] and targets[0].job_id is None
            decisions = s.exec(select(AuditEvent).where(AuditEvent.entity_type == "request",
                                                        AuditEvent.entity_id == rid,
                                                        AuditEvent.from_state == "pending_review")).all()
            assert [e.to_state for e in decisions] == [status]  # the loser left no trace
        assert s.exec(select(UnlearningJob)).all() == []
