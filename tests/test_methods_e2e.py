"""Each classifier method end to end: HTTP API → coalescer → Celery worker (in-process, memory
broker) → method → verifier → promotion or rejection."""

from __future__ import annotations

import time
import uuid

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import create_api_key
from tests.conftest import register
from unlearn.data import get_dataset
from unlearn.data.poison import flagged_subset
from unlearn.settings import Settings
from unlearn.store.db import migrate, session_scope
from workers.embedded import coalesce_sender, embedded_worker

pytestmark = pytest.mark.slow
MODELS = ("digits-acu", "digits-cnn", "digits-backdoor", "digits-swap")


@pytest.fixture(scope="module")
def service(tmp_path_factory, zoo_dir):
    settings = Settings(data_dir=tmp_path_factory.mktemp("e2e"), batch_window_s=0.3, reconcile_interval_s=5)
    migrate(settings.resolved_database_url)
    for name in MODELS:
        register(settings, zoo_dir, name)
    with session_scope(settings.resolved_database_url) as s:
        key = create_api_key(s, "acme", "operator")
    with embedded_worker(settings) as app:
        client = TestClient(create_app(settings, schedule_coalesce=coalesce_sender(app)))
        client.headers["X-API-Key"] = key
        yield client


def _submit(client, body):
    resp = client.post("/v1/deletion-requests", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def _wait(client, rid, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/deletion-requests/{rid}").json()
        if body["status"] in ("completed", "needs_review", "rejected", "failed"):
            return body
        time.sleep(0.3)
    raise TimeoutError(body["status"])


def _verdict(body):
    return next(iter(body["verdicts"].values()))


def _subject(index):
    data = get_dataset({"name": "digits", "seed": 0})
    return sorted({data.subjects[data.index[s]] for s in data.ids_in("train")})[index]


def test_acu_serves_sequential_requests_exactly(service):
    first = _wait(service, _submit(service, {"model": "digits-acu", "scope": {"type": "subject",
                                                                                "subject": _subject(5)}}))
    second = _wait(service, _submit(service, {"model": "digits-acu", "scope": {"type": "class", "label": 6}}))
    assert (first["status"], second["status"]) == ("completed", "completed"), (first["reason"], second["reason"])
    assert [first["jobs"][0]["method"], second["jobs"][0]["method"]] == ["acu", "acu"]
    versions = service.get("/v1/models/digits-acu/versions").json()
    v2, v3 = versions[1], versions[2]
    assert v3["parent_id"] == v2["id"] and v3["status"] == "promoted"  # the chain: R comes from the previous version
    # Verified against the parent's sufficient statistics, with no retrain (unlearn.verify.exact)
    assert _verdict(second)["reference_policy"] == "exact_update"
    assert _verdict(second)["criteria"]["update_statistics"]["passed"]
    assert _verdict(second)["info"]["forget_acc_now"] <= 0.05


def test_laf_serves_a_request_without_labels(service):
    """A subject's five samples that the CNN never memorised beyond what retrains with other seeds vary by:
    the membership test cannot tell LAF's forgetting from doing nothing, so LAF's candidate is refused on
    exactness and the auto request is served, and certified, by the exact retrain."""
    data = get_dataset({"name": "digits", "seed": 0})
    subject = _subject(6)
    samples = [s for s in data.ids_in("train") if data.subjects[data.index[s]] == subject]
    body = _wait(service, _submit(service, {"model": "digits-cnn", "scope": {
        "type": "samples", "sample_ids": samples, "labels_known": False}}), timeout=900)  # six CNN trainings
    assert body["jobs"][0]["method"] == "laf"  # auto: no labels, no analytic head
    assert body["status"] == "completed", body["reason"]
    served = _verdict(body)
    assert served["verdict"] == "pass" and served["method"] == "retrain"
    assert served["info"]["indistinguishable"]["statement"] == "indistinguishable from the retrain before unlearning"
    laf = next(v for v in service.get("/v1/models/digits-cnn/versions").json() if v["method"] == "laf")
    assert laf["status"] == "rejected" and laf["metrics"]["reasons"] == ["exact_method=0 fails >= 1"]
    assert laf["metrics"]["criteria"]["ulira"]["threshold"] is None  # shown, not gated: it had no power here
    cert = service.get(body["links"]["certificate"]).json()["certificate"]["models"][0]["verifier"]
    assert cert["indistinguishable_before_unlearning"]["certified_by"] == "exactness of method 'retrain'"


def test_ssd_corrects_a_backdoor_and_is_rejected_on_interclass_confusion(service):
    backdoor = flagged_subset(get_dataset({"name": "digits-backdoor", "seed": 0}), 0.25)
    fixed = _wait(service, _submit(service, {"model": "digits-backdoor", "kind": "corrective",
                                             "scope": {"type": "samples", "sample_ids": backdoor}}))
    assert fixed["jobs"][0]["method"] == "ssd"
    assert fixed["status"] == "completed", fixed["reason"]
    assert _verdict(fixed)["criteria"]["attack_success"]["value"] <= 0.10
    swap = flagged_subset(get_dataset({"name": "digits-swap", "seed": 0}), 0.25)
    confused = _wait(service, _submit(service, {"model": "digits-swap", "kind": "corrective",
                                                "scope": {"type": "samples", "sample_ids": swap}}))
    ssd, retrain = confused["attempts"]
    assert (ssd["method"], ssd["status"]) == ("ssd", "rejected")
    assert any(r.startswith("interclass_confusion=") for r in ssd["reasons"]), ssd["reasons"]
    # The chain goes on (no suspected samples to widen to) to the retrain without the flagged quarter. Whether
    # that retrain also clears the confusion the other three quarters taught is a draw of the model (measured:
    # 1 in 3 draws at 25% flagged, benchmarks/results/corrective.md): either it is served, or both failures are
    # kept and the request waits for an operator. Never `rejected` without one.
    assert retrain["method"] == "retrain"
    versions = service.get("/v1/models/digits-swap/versions").json()
    if retrain["verdict"] == "pass":
        assert confused["status"] == "completed"
        assert [(v["method"], v["status"]) for v in versions] == [("train", "retired"), ("ssd", "rejected"),
                                                                  ("retrain", "promoted")]
    else:
        assert confused["status"] == "needs_review" and "verifier" in confused["reason"]
        assert [(v["method"], v["status"]) for v in versions] == [("train", "promoted"), ("ssd", "rejected"),
                                                                  ("retrain", "rejected")]
    assert "a backdoor they teach may remain" in confused["attempts"][1]["warning"]
