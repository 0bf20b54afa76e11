"""Two operators roll the same model back at the same instant to different versions, through a real
uvicorn server on SQLite and on PostgreSQL: one wins, the other gets 409, and nothing else changes."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlmodel import Session, col, select

from api.app import create_app
from api.auth import create_api_key
from tests.conftest import copy_version, register
from tests.procs import app_server
from unlearn import registry
from unlearn.settings import Settings
from unlearn.store.db import migrate, session_scope
from unlearn.store.models import Alias, AuditEvent, ModelVersion

pytestmark = pytest.mark.integration

ROUNDS = 4
MODEL = "digits-mlp"


@pytest.fixture()
def service(empty_database, tmp_path, zoo_dir):
    s = Settings(data_dir=tmp_path / "data", database_url=empty_database, rate_limit_per_minute=100_000)
    migrate(s.resolved_database_url)
    v1 = register(s, zoo_dir)
    with session_scope(s.resolved_database_url) as db:
        parent = db.get(ModelVersion, v1.id)
        for tag in ("b", "c"):  # three versions, none tainted: any may be rolled back to
            copy_version(db, parent, tmp_path / f"copy-{tag}", tag)
    return s


@pytest.fixture()
def slow_champion_read(monkeypatch):
    """Both rollbacks of a round read the champion alias before either goes on; then one of them reads
    the version row the alias named only once the other has moved the alias: the interleaving in which
    the loser used to see its stale champion already retired, miss its failed compare-and-swap, and
    promote its own version beside the winner's."""
    both_read = threading.Barrier(2)
    real = registry.champion

    def champion(session, model_name):
        alias = session.get(Alias, (model_name, registry.CHAMPION))
        if both_read.wait(timeout=30) == 0:
            deadline = time.monotonic() + 10
            with Session(session.get_bind()) as other:
                while other.get(Alias, (model_name, registry.CHAMPION), populate_existing=True).version_id \
                        == alias.version_id and time.monotonic() < deadline:
                    other.rollback()  # a fresh snapshot for the next look
                    time.sleep(0.01)
        return session.get(ModelVersion, alias.version_id)

    monkeypatch.setattr(registry, "champion", champion)
    return real


def _rollback(base: str, key: str, version_id: str, gate: threading.Barrier) -> int:
    gate.wait(timeout=30)
    return httpx.post(f"{base}/v1/models/{MODEL}/rollback", json={"version_id": version_id, "reason": "race"},
                      headers={"X-API-Key": key}, timeout=60).status_code


def test_of_two_simultaneous_rollbacks_one_wins_and_the_other_gets_409(service, slow_champion_read):
    url = service.resolved_database_url
    with session_scope(url) as s:
        keys = [create_api_key(s, "ops", "operator"), create_api_key(s, "ops", "operator")]
    with app_server(create_app(service)) as base, ThreadPoolExecutor(max_workers=2) as pool:
        for n in range(1, ROUNDS + 1):
            with session_scope(url) as s:
                before = {v.id: v.status for v in s.exec(select(ModelVersion)).all()}
                current = slow_champion_read(s, MODEL).id
            targets = sorted(v for v in before if v != current)
            gate = threading.Barrier(2)
            futures = [pool.submit(_rollback, base, key, target, gate) for key, target in zip(keys, targets, strict=True)]
            codes = [f.result() for f in futures]

            assert sorted(codes) == [200, 409], (n, codes)
            winner, loser = targets if codes[0] == 200 else targets[::-1]
            with session_scope(url) as s:
                assert slow_champion_read(s, MODEL).id == winner
                after = {v.id: v.status for v in s.exec(select(ModelVersion)).all()}
                assert [v for v, status in after.items() if status == "promoted"] == [winner], (n, after)
                assert after[loser] == before[loser] and after[current] == "retired"  # the loser changed nothing
                moves = s.exec(select(AuditEvent).where(AuditEvent.entity_type == "alias",
                                                        col(AuditEvent.reason).startswith("rollback:"))
                               .order_by(col(AuditEvent.at), col(AuditEvent.id))).all()
                assert len(moves) == n and (moves[-1].from_state, moves[-1].to_state) == (current, winner)
