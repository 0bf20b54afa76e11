"""Errors that cannot heal fail a job at its first attempt; transient ones are retried by Celery with backoff.

Both run through a real Celery worker process on a private redis-server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from tests.fault_methods import FAMILIES, PLUGINS
from tests.test_faults import Service, redis_server  # noqa: F401  (the fixture)
from unlearn import data, registry
from unlearn.intake import DeletionRequestIn, submit
from unlearn.methods import METHODS
from unlearn.methods.base import MethodSpec, UnlearnTask
from unlearn.methods.retrain import run as retrain
from unlearn.plugins import UnknownComponent
from unlearn.store.db import session_scope

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _db_away_once(task: UnlearnTask) -> dict:
    """Lose the database connection in the first attempt (a marker file remembers it), then retrain."""
    marker = Path(task.params["marker"])
    if not marker.exists():
        marker.touch()
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
    return retrain(task)


DB_AWAY_ONCE = MethodSpec(name="db-away-once", families=FAMILIES, run=_db_away_once, exact=True)
FLAKY = {"db-away-once": f"{__name__}:DB_AWAY_ONCE"}


def test_an_unknown_component_is_a_key_error_with_a_plain_message():
    with pytest.raises(UnknownComponent) as info:
        data.get_dataset({"name": "nowhere"})
    assert isinstance(info.value, KeyError)
    assert str(info.value).startswith("unknown data set 'nowhere'; known: ")


def test_a_model_whose_data_set_the_worker_does_not_know_fails_at_the_first_attempt(
        tmp_path, zoo_dir, redis_server, monkeypatch):  # noqa: F811
    # The model is registered where its data set is known (a plugin of the registering process only)...
    monkeypatch.setitem(data._DATASETS, "digits-elsewhere", data._DATASETS["digits"])
    folder = tmp_path / "digits-elsewhere"
    shutil.copytree(zoo_dir / "digits-mlp", folder)
    meta = json.loads((folder / "unlearn.json").read_text())
    meta.update(model="digits-elsewhere", dataset={**meta["dataset"], "name": "digits-elsewhere"})
    (folder / "unlearn.json").write_text(json.dumps(meta))
    svc = Service(tmp_path, zoo_dir, redis_server)
    with session_scope(svc.settings.resolved_database_url) as s:
        registry.import_model(s, name="digits-elsewhere", family="classifier", source_dir=folder,
                              artifact_root=svc.settings.resolved_artifact_root, salt=svc.settings.subject_salt)
    with session_scope(svc.settings.resolved_database_url) as s:
        body = DeletionRequestIn(model="digits-elsewhere", method="retrain",
                                 scope={"type": "subject", "subject": "subject-0001"})
        ids = [submit(s, svc.settings, "t", body)[0].id]
    svc.celery.send_task("ops.coalesce", kwargs={"force": True})
    # ...and served by a worker that does not know it: no retry can mend that.
    with svc.worker("w1"):
        assert svc.wait_final(ids) == ["failed"]
    (job,) = [j for j in svc.jobs() if j.model_name == "digits-elsewhere"]
    assert (job.stage, job.attempts) == ("failed", 1)
    assert "unknown data set 'digits-elsewhere'" in job.error


def test_a_transient_database_error_is_retried_by_celery_and_the_job_completes(
        tmp_path, zoo_dir, redis_server, monkeypatch):  # noqa: F811
    for name, target in FLAKY.items():
        monkeypatch.setitem(METHODS, name, target)
    svc = Service(tmp_path, zoo_dir, redis_server)
    svc.env["UNLEARN_EXTRA_METHODS"] = json.dumps({**PLUGINS, **FLAKY})
    marker = tmp_path / "db-away-once"
    ids = svc.submit(method="db-away-once", params={"marker": str(marker)})
    with svc.worker("w1"):
        assert svc.wait_final(ids) == ["completed"]
    assert marker.exists()
    (job,) = svc.jobs()
    assert (job.stage, job.attempts) == ("done", 2)  # each delivery claims an attempt: the cap still holds
    log = (svc.logs / "w1.log").read_text()
    assert "Retry in" in log and "OperationalError" in log  # Celery's own retry, not a re-sent message
