"""The one verification policy: the gates a version is verified under are stored with its verdict,
and a certificate states those, not the settings in force when the certificate is issued."""

from __future__ import annotations

from unlearn import certificates
from unlearn.coalesce import coalesce
from unlearn.intake import DeletionRequestIn, submit
from unlearn.jobs import run_job
from unlearn.store.db import session_scope
from unlearn.store.models import Certificate, ModelVersion


def _forget(settings, subject: str) -> tuple[str, str]:
    with session_scope(settings.resolved_database_url) as s:
        request, _ = submit(s, settings, "t", DeletionRequestIn(model="digits-mlp",
                                                                scope={"type": "subject", "subject": subject}))
        (job_id,) = coalesce(s, settings, force=True)
    outcome = run_job(settings, job_id, "test-worker")
    return request.id, outcome.detail


def test_a_certificate_states_the_gates_its_version_was_verified_under(digits_service):
    strict = digits_service.model_copy(update={"gate_mia_rel_tol": 0.5, "gate_test_acc_margin": 0.04})
    first, detail = _forget(strict, "subject-0002")
    assert detail == "promoted"
    with session_scope(strict.resolved_database_url) as s:
        version = s.get(Certificate, first).body["models"][0]["new_version"]
        metrics = s.get(ModelVersion, version["id"]).metrics
    assert metrics["gate_overrides"] == {"mia_rel_tol": 0.5, "test_acc_margin": 0.04}
    assert metrics["gates"]["mia_rel_tol"] == 0.5 and metrics["criteria"]["privleak"]["threshold"] == 0.5

    # The deployment's gates change; a second request for the same subject completes on that version
    # without new verification: its certificate must state the gates that version was verified under.
    loose = digits_service.model_copy(update={"gate_mia_rel_tol": 0.9})
    second, detail = _forget(loose, "subject-0002")
    assert detail == "already forgotten"
    with session_scope(loose.resolved_database_url) as s:
        doc = certificates.document(s.get(Certificate, second))
    entry = doc["certificate"]["models"][0]
    assert entry["new_version"]["id"] == version["id"]
    assert entry["verifier"]["gate_overrides"] == {"mia_rel_tol": 0.5, "test_acc_margin": 0.04}
    assert certificates.verify_certificate(doc, certificates.public_key_pem(loose))
