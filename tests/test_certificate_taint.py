"""One subject request over three models: whatever order their jobs finish in, every model retires the
versions that still hold the subject's data, and the certificate lists them all, model by model."""

from __future__ import annotations

import itertools
import shutil

import pytest
from sqlmodel import select

from tests.conftest import copy_version, register
from unlearn import registry
from unlearn.coalesce import coalesce
from unlearn.intake import DeletionRequestIn, submit
from unlearn.jobs import run_job
from unlearn.settings import Settings
from unlearn.store.db import migrate, session_scope
from unlearn.store.models import Certificate, ModelVersion, RequestTarget, UnlearningJob
from unlearn.store.states import VersionStatus
from unlearn.zoo import ensure

SUBJECT = "subject-0003"
MODELS = ("digits-acu", "digits-mlp", "digits-mlp-copy")


@pytest.fixture(scope="module")
def template(tmp_path_factory, zoo_dir):
    """Three models holding the subject's samples, each with a second version (a copy of the first),
    so that every model has more than one version still holding them."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("taint") / "data", batch_window_s=0.0, lease_s=30.0)
    migrate(settings.resolved_database_url)
    register(settings, zoo_dir, "digits-mlp")
    register(settings, zoo_dir, "digits-acu")
    with session_scope(settings.resolved_database_url) as s:
        registry.import_model(s, name="digits-mlp-copy", family="classifier", source_dir=ensure("digits-mlp", zoo_dir),
                              artifact_root=settings.resolved_artifact_root, salt=settings.subject_salt)
    with session_scope(settings.resolved_database_url) as s:
        for name in MODELS:
            parent = registry.champion(s, name)
            copy_version(s, parent, settings.resolved_artifact_root / name / "copy", "copy")
    return settings


def _fresh(template: Settings, tmp_path) -> Settings:
    """A copy of the template's data folder: its own database, and new artifacts written under it (the
    registered versions' rows still name the template's folders, which the jobs only read)."""
    settings = template.model_copy(update={"data_dir": tmp_path / "data"})
    shutil.copytree(template.data_dir, settings.data_dir)
    return settings


@pytest.mark.parametrize("order", list(itertools.permutations(MODELS)), ids="-then-".join)
def test_every_model_of_a_request_retires_and_lists_its_tainted_versions(template, tmp_path, order):
    settings = _fresh(template, tmp_path)  # every order starts from the same registered models
    url = settings.resolved_database_url
    with session_scope(url) as s:
        request, _ = submit(s, settings, "tenant-a", DeletionRequestIn(
            scope={"type": "subject", "subject": SUBJECT}), actor="test")
        rid = request.id
    with session_scope(url) as s:
        coalesce(s, settings, force=True)
        jobs = {j.model_name: j.id for j in s.exec(select(UnlearningJob)).all()}
    assert set(jobs) == set(MODELS)
    for name in order:
        assert run_job(settings, jobs[name], "test-worker").status == "done", name

    with session_scope(url) as s:
        doc = s.get(Certificate, rid).body
        forget = {t.model_name: set(t.forget_ids) for t in s.exec(
            select(RequestTarget).where(RequestTarget.request_id == rid)).all()}
        versions = {name: s.exec(select(ModelVersion).where(ModelVersion.model_name == name)).all()
                    for name in MODELS}
    entries = {m["model"]: m for m in doc["models"]}
    assert set(entries) == set(MODELS)
    for name in MODELS:
        assert forget[name], f"{name} holds none of the subject's samples"
        holding = {v.id for v in versions[name] if not forget[name] <= set(v.excluded_ids)}
        listed = {t["id"]: t for t in entries[name]["tainted_versions_retired"]}
        assert len(holding) == 2, name  # the imported version and its copy
        for v in versions[name]:
            if v.id in holding:  # retired, never served again, and on the certificate as holding the data
                assert v.tainted and v.status == VersionStatus.RETIRED, (name, v.version, v.status)
                assert listed[v.id]["held_request_data"] is True, (name, v.version)
        for vid, t in listed.items():  # nothing listed as clean holds the subject's data
            assert t["held_request_data"] == (vid in holding), (name, vid)
        assert entries[name]["new_version"]["id"] not in holding
