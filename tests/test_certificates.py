"""Deletion certificates: issued on completion, signed with Ed25519, verifiable offline; any edit breaks them."""

from __future__ import annotations

import copy
import json
import stat

import pytest
from sqlmodel import select

from tests.conftest import register
from unlearn import certificates
from unlearn.certificates import check_certificate, public_key_pem, verify_certificate
from unlearn.coalesce import coalesce
from unlearn.intake import DeletionRequestIn, submit
from unlearn.jobs import run_job
from unlearn.settings import Settings
from unlearn.store.db import migrate, session_scope
from unlearn.store.models import AuditEvent, Certificate, ModelVersion

SUBJECT = "subject-0001"


@pytest.fixture(scope="module")
def completed(tmp_path_factory, zoo_dir):
    """One subject forgotten from digits-mlp, end to end (shared by this file's tests)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("cert") / "data", batch_window_s=0.0, lease_s=30.0)
    migrate(settings.resolved_database_url)
    register(settings, zoo_dir)
    with session_scope(settings.resolved_database_url) as s:
        request, _ = submit(s, settings, "tenant-a", DeletionRequestIn(
            model="digits-mlp", scope={"type": "subject", "subject": SUBJECT}), actor="test")
        rid = request.id
    with session_scope(settings.resolved_database_url) as s:
        (job_id,) = coalesce(s, settings, force=True)
    assert run_job(settings, job_id, "test-worker").status == "done"
    with session_scope(settings.resolved_database_url) as s:
        doc = certificates.document(s.get(Certificate, rid))
    return settings, rid, doc


def test_the_key_is_made_once_private_and_stable(tmp_path):
    settings = Settings(data_dir=tmp_path)
    pem = public_key_pem(settings)
    path = settings.resolved_signing_key_path
    assert path == tmp_path / "keys" / "service_ed25519.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert public_key_pem(settings) == pem  # loaded, not regenerated
    assert certificates.key_id(pem) == certificates.key_id(pem.encode()) and len(certificates.key_id(pem)) == 64
    other = Settings(data_dir=tmp_path / "elsewhere", signing_key_path=tmp_path / "mine.pem")
    assert public_key_pem(other) != pem and (tmp_path / "mine.pem").exists()


def test_a_completed_request_gets_a_certificate_that_verifies(completed):
    settings, rid, doc = completed
    assert verify_certificate(doc, public_key_pem(settings))
    body = doc["certificate"]
    assert body["request"]["id"] == rid and body["request"]["completed_at"] and body["issued_at"]
    assert len(body["request"]["subject_hash"]) == 64 and SUBJECT not in json.dumps(doc)
    (model,) = body["models"]
    with session_scope(settings.resolved_database_url) as s:
        versions = {v.version: v for v in s.exec(select(ModelVersion).where(ModelVersion.model_name == "digits-mlp"))}
        events = s.exec(select(AuditEvent).where(AuditEvent.entity_type == "certificate",
                                                 AuditEvent.entity_id == rid)).all()
    new = versions[2]
    assert model["model"] == "digits-mlp" and model["method"] == new.method and model["forgotten_samples"] >= 1
    assert model["new_version"]["id"] == new.id and model["new_version"]["weights_sha256"] == new.weights_sha256
    assert model["verifier"]["verdict"] == "pass"
    assert set(model["verifier"]["criteria"]) >= {"forget_acc", "test_acc"}
    verifier = model["verifier"]
    assert verifier["thresholds"]["forget_acc"] == {"op": "<=", "threshold": verifier["criteria"]["forget_acc"]["threshold"]}
    assert verifier["gate_overrides"] == {}  # none set: the verifier's defaults applied
    (retired,) = model["tainted_versions_retired"]
    assert retired["id"] == versions[1].id and retired["held_request_data"] is True
    assert [e.to_state for e in events] == ["issued"]


def _leaves(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(obj, list) and obj:
        for i, v in enumerate(obj):
            yield from _leaves(v, (*path, i))
    else:
        yield path, obj


def _edited(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value[:-1] + ("0" if value[-1:] != "0" else "1")
    if isinstance(value, list):
        return ["added"]
    return "edited"


def test_any_edited_field_fails_verification(completed):
    settings, _, doc = completed
    pem = public_key_pem(settings)
    paths = list(_leaves(doc))
    assert len(paths) > 40
    for path, value in paths:
        forged = copy.deepcopy(doc)
        node = forged
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = _edited(value)
        assert not verify_certificate(forged, pem), f"an edit of {'/'.join(map(str, path))} went unnoticed"
    extra = copy.deepcopy(doc)
    extra["certificate"]["request"]["note"] = "added later"
    assert "signature" in check_certificate(extra, pem)
    stranger = public_key_pem(Settings(data_dir=settings.data_dir / "another-service"))
    assert "another key" in check_certificate(doc, stranger)
    assert check_certificate({"certificate": "x"}, pem)


def test_cli_verifies_offline_and_rejects_a_forgery(completed, tmp_path, capsys):
    from cli.main import main

    settings, _, doc = completed
    key = tmp_path / "service.pub.pem"
    key.write_text(public_key_pem(settings))
    good = tmp_path / "cert.json"
    good.write_text(json.dumps(doc))
    assert main(["verify-certificate", str(good), "--public-key", str(key)]) == 0
    assert "certificate valid" in capsys.readouterr().out
    forged = copy.deepcopy(doc)
    forged["certificate"]["models"][0]["new_version"]["weights_sha256"] = "0" * 64
    bad = tmp_path / "forged.json"
    bad.write_text(json.dumps(forged))
    assert main(["verify-certificate", str(bad), "--public-key", str(key)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("unlearn: certificate INVALID") and "\n" not in err
