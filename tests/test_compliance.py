"""Continuous compliance: champions are re-verified against everything forgotten so far."""

from sqlalchemy import update
from sqlmodel import select

from tests.conftest import post_request
from unlearn.coalesce import coalesce
from unlearn.compliance import check_all, run_compliance_check
from unlearn.jobs import run_job
from unlearn.store.db import session_scope
from unlearn.store.models import Alias, AuditEvent, DeletionRequest, Model, ModelVersion


def _serve(settings):
    with session_scope(settings.resolved_database_url) as s:
        job_ids = coalesce(s, settings, force=True)
    return [run_job(settings, j, "w").status for j in job_ids]


def test_a_clean_champion_passes_and_a_regression_reopens_its_requests(api):
    settings = api.settings
    rid = post_request(api, {"model": "digits-mlp", "scope": {"type": "subject", "subject": "subject-0001"}}).json()["id"]
    assert _serve(settings) == ["done"]
    url = settings.resolved_database_url
    with session_scope(url) as s:
        (check,) = check_all(s, settings)
        assert check.passed and not check.regression and check.forgotten > 0
        assert check.report["verdict"]["verdict"] == "pass"
        # Break the rule behind the service's back: serve the original again.
        v1 = s.exec(select(ModelVersion).where(ModelVersion.version == 1)).one()
        s.execute(update(Alias).values(version_id=v1.id))
    with session_scope(url) as s:
        check = run_compliance_check(s, settings, "digits-mlp", trigger="operator")
        assert not check.passed and check.regression and check.reopened_request_ids == [rid]
        assert check.report["missing_from_champion"]
        assert s.get(DeletionRequest, rid).status == "queued"
        assert s.exec(select(AuditEvent).where(AuditEvent.to_state == "compliance-regression")).first()
    assert "unlearn_compliance_regressions 1.0" in api.get("/metrics").text
    assert _serve(settings) == ["done"]  # the reopened request is served again, by an exact retrain
    with session_scope(url) as s:
        assert s.get(DeletionRequest, rid).status == "completed"
        champ = s.get(ModelVersion, s.get(Alias, ("digits-mlp", "champion")).version_id)
        assert champ.method == "retrain" and champ.version == 3
        assert run_compliance_check(s, settings, "digits-mlp").passed


def test_a_champion_that_no_longer_meets_the_gate_is_a_regression(api):
    settings = api.settings
    post_request(api, {"model": "digits-mlp", "scope": {"type": "class", "label": 5}, "method": "retrain"})
    assert _serve(settings) == ["done"]
    with session_scope(settings.resolved_database_url) as s:
        s.get(Model, "digits-mlp").thresholds = {"test_acc_margin": -0.5}  # a gate nothing can meet
    with session_scope(settings.resolved_database_url) as s:
        check = run_compliance_check(s, settings, "digits-mlp")
        assert not check.passed and check.regression
        assert any("test_acc" in r for r in check.report["verdict"]["reasons"])


def test_the_verifier_itself_catches_a_champion_that_still_remembers(api, tmp_path):
    """No stub and no bookkeeping gap: the champion's records say it excludes every forgotten sample, but
    its weights are the original's. Only the membership test (U-LiRA) can see that it still remembers."""
    import shutil

    import numpy as np

    from unlearn import registry
    from unlearn.data import get_dataset

    settings = api.settings
    train = get_dataset({"name": "digits", "seed": 0}).ids_in("train")
    forget = sorted(np.random.default_rng(3).choice(train, 50, replace=False).tolist())
    post_request(api, {"model": "digits-mlp", "scope": {"type": "samples", "sample_ids": forget}, "method": "retrain"})
    assert _serve(settings) == ["done"]
    url = settings.resolved_database_url
    with session_scope(url) as s:
        champ = s.get(ModelVersion, s.get(Alias, ("digits-mlp", "champion")).version_id)
        original = s.exec(select(ModelVersion).where(ModelVersion.version == 1)).one()
        assert run_compliance_check(s, settings, "digits-mlp").passed  # the exact retrain passes
        folder = tmp_path / "remembers"
        shutil.copytree(original.artifact_path, folder, ignore=shutil.ignore_patterns(registry.MANIFEST))
        # registered as if a retrain had made it from the champion: it "excludes" the 50 samples
        fake = registry.register_version(s, parent=champ, method="retrain", params={"copy": "original"},
                                         folder=folder, forget_ids=[], request_ids=[], job_id="job-fake",
                                         method_info={}, verdict={"verdict": "pass"})
        assert set(forget) <= set(fake.excluded_ids)
        s.execute(update(Alias).values(version_id=fake.id))
    with session_scope(url) as s:
        check = run_compliance_check(s, settings, "digits-mlp", trigger="operator")
        assert check.report["missing_from_champion"] == []  # the bookkeeping sees nothing wrong
        assert not check.passed and check.regression
        ulira = check.report["verdict"]["criteria"]["ulira"]
        assert ulira["threshold"] == 0.0 and not ulira["passed"] and ulira["ci"][0] > 0
        assert any(r.startswith("ulira=") for r in check.report["verdict"]["reasons"])
