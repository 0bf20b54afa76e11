"""Deadlines within the law (GDPR art. 12(3): one month, extendable by two further months at most).

Nonsensical deadline settings stop every command at start-up with one line naming the variable; a
request's extensions are capped in total from its original due date, which is stored.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from tests.conftest import register
from tests.procs import ROOT, free_port
from unlearn.settings import Settings, SettingsError
from unlearn.store.db import migrate

DAY = timedelta(days=1)


@pytest.mark.parametrize(("env", "named"), [
    ({"UNLEARN_DUE_DAYS": "-3"}, "UNLEARN_DUE_DAYS=-3"),
    ({"UNLEARN_DUE_DAYS": "91"}, "UNLEARN_DUE_DAYS=91"),
    ({"UNLEARN_DUE_DAYS": "10", "UNLEARN_AT_RISK_DAYS": "10"}, "UNLEARN_AT_RISK_DAYS=10"),
    ({"UNLEARN_AT_RISK_DAYS": "-1"}, "UNLEARN_AT_RISK_DAYS=-1"),
    ({"UNLEARN_MAX_EXTENSION_DAYS": "400"}, "UNLEARN_MAX_EXTENSION_DAYS=400"),
    ({"UNLEARN_MAX_EXTENSION_DAYS": "-1"}, "UNLEARN_MAX_EXTENSION_DAYS=-1"),
    ({"UNLEARN_BATCH_WINDOW_S": "-1"}, "UNLEARN_BATCH_WINDOW_S=-1"),
    ({"UNLEARN_LEASE_S": "0"}, "UNLEARN_LEASE_S=0"),
    ({"UNLEARN_RECONCILE_INTERVAL_S": "-30"}, "UNLEARN_RECONCILE_INTERVAL_S=-30"),
    ({"UNLEARN_HEARTBEAT_INTERVAL_S": "0"}, "UNLEARN_HEARTBEAT_INTERVAL_S=0"),
    ({"UNLEARN_MAX_ATTEMPTS": "0"}, "UNLEARN_MAX_ATTEMPTS=0"),
    ({"UNLEARN_MAX_BATCH_REQUESTS": "0"}, "UNLEARN_MAX_BATCH_REQUESTS=0"),
    ({"UNLEARN_TASK_SOFT_TIME_LIMIT_S": "4000"}, "UNLEARN_TASK_SOFT_TIME_LIMIT_S=4000"),
])
def test_settings_refuse_nonsense_in_one_line(monkeypatch, env, named):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError) as err:
        Settings()
    assert named in str(err.value) and "\n" not in str(err.value)


def test_the_defaults_are_within_the_law(monkeypatch):
    for name in ("UNLEARN_DUE_DAYS", "UNLEARN_AT_RISK_DAYS", "UNLEARN_MAX_EXTENSION_DAYS"):
        monkeypatch.delenv(name, raising=False)
    s = Settings()
    assert (s.due_days, s.at_risk_days, s.max_extension_days) == (30, 5, 60)


@pytest.mark.parametrize("command", [["serve", "--port", "{port}"], ["api-key", "create", "--tenant", "a",
                                                                     "--role", "operator"], ["worker"]])
def test_a_process_with_a_deadline_before_arrival_refuses_to_start(tmp_path, command):
    data = tmp_path / "data"
    env = {**os.environ, "UNLEARN_DATA_DIR": str(data), "UNLEARN_DUE_DAYS": "-3", "PYTHONPATH": str(ROOT)}
    argv = [a.format(port=free_port()) for a in command]
    proc = subprocess.run([sys.executable, "-m", "cli.main", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "UNLEARN_DUE_DAYS=-3" in proc.stderr and "Traceback" not in proc.stderr
    assert not (data / "unlearn.db").exists()  # nothing was started, not even the database


@pytest.fixture()
def operator_api(empty_database, tmp_path, zoo_dir):
    from api.app import create_app
    from api.auth import create_api_key
    from unlearn.store.db import session_scope

    settings = Settings(data_dir=tmp_path / "data", database_url=empty_database, batch_window_s=3600.0)
    migrate(settings.resolved_database_url)
    register(settings, zoo_dir)
    with session_scope(settings.resolved_database_url) as s:
        key = create_api_key(s, "ops", "operator")
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    client.headers["X-API-Key"] = key
    return client


def _extend(client, rid: str, days: int):
    return client.post(f"/v1/deletion-requests/{rid}/extend", json={"days": days, "reason": "art. 12(3) complexity"})


def test_extensions_stop_two_months_after_the_original_due_date(operator_api):
    from datetime import datetime

    created = operator_api.post("/v1/deletion-requests", headers={"Idempotency-Key": "k1"}, json={
        "model": "digits-mlp", "scope": {"type": "subject", "subject": "subject-0007"}})
    assert created.status_code == 202
    rid, original = created.json()["id"], datetime.fromisoformat(created.json()["due_at"])
    assert datetime.fromisoformat(created.json()["original_due_at"]) == original

    assert _extend(operator_api, rid, 40).status_code == 200
    over = _extend(operator_api, rid, 30)
    assert over.status_code == 409 and over.headers["content-type"].startswith("application/problem+json")
    assert over.json()["title"] == "Extension limit reached"
    assert "at most 60 days" in over.json()["detail"] and "20 days of extension are left" in over.json()["detail"]

    second = _extend(operator_api, rid, 20)  # 60 days in two extensions
    assert second.status_code == 200
    body = second.json()
    assert datetime.fromisoformat(body["due_at"]) - original == 60 * DAY
    assert datetime.fromisoformat(body["original_due_at"]) == original

    third = _extend(operator_api, rid, 1)
    assert third.status_code == 409 and "no extension is left" in third.json()["detail"]
    after = operator_api.get(f"/v1/deletion-requests/{rid}").json()
    assert datetime.fromisoformat(after["due_at"]) - original == 60 * DAY  # the refusals changed nothing
    audit = operator_api.get(f"/v1/deletion-requests/{rid}/audit").json()
    assert [e["reason"].split(":")[0] for e in audit if "extended" in (e["reason"] or "")] == [
        "due date extended by 40 days", "due date extended by 20 days"]
