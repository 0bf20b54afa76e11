"""No deletion request dead-ends: a candidate that fails its gate is kept `rejected` with its verdict and the
job goes on down the family's chain of methods (`Family.method_chain`), the request completing with the
first candidate that passes. A method an operator named runs first, with their parameters, and the chain
continues after it. When the chain is spent, or the cost budget or the deadline stops it, the request waits
in `needs_review` with every attempt's verdict, and only an operator's decision rejects it or retries it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from tests.test_recipes import _memory
from tests.test_recipes import _write as write_memory
from unlearn import methods, registry
from unlearn.certificates import public_key_pem, verify_certificate
from unlearn.coalesce import coalesce
from unlearn.contracts import Progress, SampleRecord, Scope, no_progress
from unlearn.families import Family, register_family
from unlearn.families.base import ChainStep
from unlearn.intake import DeletionRequestIn, submit
from unlearn.jobs import method_steps, run_job
from unlearn.methods.base import MethodSpec, UnlearnTask
from unlearn.settings import Settings
from unlearn.sla import flags
from unlearn.store.db import migrate, session_scope
from unlearn.store.models import AuditEvent, DeletionRequest, Model, ModelVersion, RequestTarget, utcnow
from unlearn.verify import Verdict, criterion

N = 30
BACKDOOR_NOTE = "retrained without the flagged samples only"


def _write(out_dir: Path, memory: Sequence[str], **meta: Any) -> None:
    write_memory(out_dir, memory, family="sticky", **meta)


class StickyFamily(Family):
    """A model that is the set of ids it saw. Its `auto` method forgets nothing (a method that misses); a
    corrective request's chain widens to the suspected samples with a method that does forget, then retrains
    with a warning, as the classifier family's corrective chain does with SSD."""

    name = "sticky"
    criteria = ("forget_recall",)
    gate_defaults = {"forget_recall_max": 0.0}

    def samples(self, model_dir: Path) -> list[SampleRecord]:
        return [SampleRecord(f"s-{i:03d}", subject=f"person-{i % 10}") for i in range(N)]

    def auto_method(self, model_dir: Path, scope: Scope) -> str:
        return "sticky-miss"

    def method_chain(self, model_dir: Path, scope: Scope) -> list[ChainStep]:
        if scope.kind != "corrective":
            return super().method_chain(model_dir, scope)
        return [ChainStep("sticky-miss"), ChainStep("sticky-forget", widen=True),
                ChainStep("retrain", warning=f"{BACKDOOR_NOTE}: a backdoor may remain")]

    def can_retrain(self, model_dir: Path) -> bool:
        return not json.loads((Path(model_dir) / "unlearn.json").read_text()).get("no_recipe")

    def retrain(self, model_dir: Path, keep_ids: Sequence[str], out_dir: Path, *, device: str = "cpu",
                progress: Progress = no_progress) -> None:
        _write(out_dir, keep_ids)

    def verify(self, candidate_dir: Path, reference_dir: Path | None, forget_ids: Sequence[str],
               retain_ids: Sequence[str], scope: Scope, *, device: str = "cpu",
               thresholds: dict[str, float] | None = None, report_dir: Path | None = None) -> Verdict:
        memory = _memory(candidate_dir)
        recall = sum(s in memory for s in forget_ids) / max(len(forget_ids), 1)
        return Verdict(criteria=[criterion("forget_recall", recall, "<=", {**self.gate_defaults,
                                                                          **(thresholds or {})}["forget_recall_max"])])


def sticky_miss(task: UnlearnTask) -> dict[str, Any]:
    _write(task.out_dir, _memory(task.base_dir), method="sticky-miss")
    return {"params_seen": dict(task.params)}


def sticky_forget(task: UnlearnTask) -> dict[str, Any]:
    _write(task.out_dir, _memory(task.base_dir) - set(task.forget_ids), method="sticky-forget")
    return {}


MISS = MethodSpec(name="sticky-miss", families=("sticky",), run=sticky_miss, needs_labels=False)
FORGET = MethodSpec(name="sticky-forget", families=("sticky",), run=sticky_forget, needs_labels=False)


def _install(settings: Settings, tmp_path: Path, *, recipe: bool = True) -> None:
    register_family("sticky", f"{__name__}:StickyFamily")
    methods.register_method("sticky-miss", f"{__name__}:MISS")
    methods.register_method("sticky-forget", f"{__name__}:FORGET")
    source = tmp_path / "sticky-v1"
    _write(source, [f"s-{i:03d}" for i in range(N)], **({} if recipe else {"no_recipe": True}))
    with session_scope(settings.resolved_database_url) as s:
        registry.import_model(s, name="sticky", family="sticky", source_dir=source,
                              artifact_root=settings.resolved_artifact_root, salt=settings.subject_salt)


@pytest.fixture(autouse=True)
def _uninstall():
    yield
    from unlearn import families

    families._FAMILIES.pop("sticky", None)
    families._cache.pop("sticky", None)
    for name in ("sticky-miss", "sticky-forget"):
        methods.METHODS.pop(name, None)


@pytest.fixture(params=[True, False], ids=["recipe", "no-recipe"])
def sticky(request, settings, tmp_path):
    _install(settings, tmp_path, recipe=request.param)
    return settings, request.param


@pytest.fixture(params=["sqlite", "postgresql"])
def sticky_db(request, tmp_path, zoo_dir):
    """The sticky model (with its recipe) on each database a deployment runs on."""
    if request.param == "sqlite":
        settings = Settings(data_dir=tmp_path / "data", batch_window_s=0.0, lease_s=30.0)
        migrate(settings.resolved_database_url)
        _install(settings, tmp_path)
        yield settings
        return
    from tests.procs import postgres_database

    with postgres_database() as url:
        settings = Settings(data_dir=tmp_path / "data", database_url=url, batch_window_s=0.0, lease_s=30.0)
        migrate(url)
        _install(settings, tmp_path)
        yield settings


def _submit(settings, body: dict) -> str:
    with session_scope(settings.resolved_database_url) as s:
        request, _ = submit(s, settings, "t", DeletionRequestIn(**body))
        return request.id


def _run_pending(settings) -> list[str]:
    with session_scope(settings.resolved_database_url) as s:
        job_ids = coalesce(s, settings, force=True)
    for job_id in job_ids:
        run_job(settings, job_id, "test-worker")
    return job_ids


def _serve(settings, body: dict) -> tuple[DeletionRequest, list[ModelVersion], list[AuditEvent]]:
    rid = _submit(settings, body)
    (job_id,) = _run_pending(settings)
    return _state(settings, rid, job_id)


def _state(settings, rid: str, job_id: str) -> tuple[DeletionRequest, list[ModelVersion], list[AuditEvent]]:
    with session_scope(settings.resolved_database_url) as s:
        versions = list(s.exec(select(ModelVersion).where(ModelVersion.model_name == "sticky", ModelVersion.version > 1)
                               .order_by(ModelVersion.version)).all())
        events = list(s.exec(select(AuditEvent).where(AuditEvent.entity_id == job_id,
                                                      AuditEvent.to_state == "next_method")).all())
        return s.get(DeletionRequest, rid), versions, events


def test_a_request_falls_through_a_failing_method_and_completes_on_the_next(sticky):
    settings, can_retrain = sticky
    request, versions, events = _serve(settings, {"model": "sticky", "scope": {"type": "subject", "subject": "person-3"}})
    assert versions[0].method == "sticky-miss" and versions[0].status == "rejected"
    assert not versions[0].metrics["criteria"]["forget_recall"]["passed"]  # its verdict is kept
    assert len(events) == 1 and "sticky-miss" in events[0].reason
    if can_retrain:
        assert request.status == "completed", request.reason
        assert [(v.method, v.status) for v in versions] == [("sticky-miss", "rejected"), ("retrain", "promoted")]
        with session_scope(settings.resolved_database_url) as s:
            from unlearn.store.models import Certificate

            cert = s.get(Certificate, request.id)
            attempts = cert.body["models"][0]["attempts"]
            doc = {"certificate": cert.body, "algorithm": "Ed25519", "key_id": cert.key_id, "signature": cert.signature}
        assert [(a["method"], a["verdict"], a["status"]) for a in attempts] == [
            ("sticky-miss", "fail", "rejected"), ("retrain", "pass", "promoted")]
        assert all(a["wall_seconds"] > 0 and a["device"] == "cpu" for a in attempts)
        assert "forget_recall" in " ".join(attempts[0]["reasons"])
        assert verify_certificate(doc, public_key_pem(settings))
    else:  # nothing can follow: an operator decides, with the verdict; never rejected by the service
        assert request.status == "needs_review" and "forget_recall" in request.reason
        assert "every method of the chain (sticky-miss)" in request.reason and "no retrain recipe" in request.reason
        assert [v.method for v in versions] == ["sticky-miss"]
        with session_scope(settings.resolved_database_url) as s:
            (target,) = s.exec(select(RequestTarget).where(RequestTarget.request_id == request.id)).all()
            assert (target.status, target.version_id) == ("needs_review", versions[0].id)
            # the overdue clock runs while it waits: past its due date it is overdue
            assert flags(request, request.due_at + timedelta(seconds=1), 5) == (True, False)


def test_a_named_method_runs_first_with_its_parameters_then_the_chain_goes_on(sticky):
    settings, can_retrain = sticky
    request, versions, _ = _serve(settings, {"model": "sticky", "method": "sticky-miss", "params": {"strength": 2},
                                             "scope": {"type": "samples", "sample_ids": ["s-001", "s-002"]}})
    assert versions[0].method_info["params_seen"] == {"strength": 2} and versions[0].params == {"strength": 2}
    if can_retrain:
        assert request.status == "completed"
        assert [(v.method, v.params) for v in versions] == [("sticky-miss", {"strength": 2}), ("retrain", {})]
    else:
        assert request.status == "needs_review" and [v.method for v in versions] == ["sticky-miss"]


def test_the_steps_of_a_job_start_with_the_named_method_and_continue_after_it():
    chain = [ChainStep("ssd"), ChainStep("ssd", widen=True), ChainStep("retrain", warning="w")]
    assert method_steps(chain, "ssd", has_suspects=True) == chain
    assert method_steps(chain, "ssd", has_suspects=False) == [chain[0], chain[2]]  # nothing to widen to
    assert method_steps(chain, "laf", has_suspects=True) == [ChainStep("laf"), *chain]  # not in it: the whole chain
    assert method_steps(chain, "retrain", has_suspects=True) == [chain[2]]  # the last: nothing after it
    lm = [ChainStep("whp"), ChainStep("npo_klr"), ChainStep("retrain")]
    assert [s.method for s in method_steps(lm, "npo_klr", has_suspects=False)] == ["npo_klr", "retrain"]


def test_each_family_declares_its_chain_per_kind_of_request(tmp_path):
    """The chains of the issue, read from the families on stand-in folders (only `unlearn.json` is read)."""
    from unlearn.artifacts import write_meta
    from unlearn.families import get_family
    from unlearn.families.classifier import RETRAIN_KEEPS_BACKDOOR

    def folder(name: str, **meta: Any) -> Path:
        write_meta(tmp_path / name, meta)
        return tmp_path / name

    def chain(family: str, model_dir: Path, **scope: Any) -> list[tuple[str, bool, bool]]:
        return [(s.method, s.widen, s.warning is not None)
                for s in get_family(family).method_chain(model_dir, Scope(**scope))]

    cnn, head = folder("cnn", arch="cnn"), folder("head", arch="analytic")
    assert chain("classifier", head) == [("acu", False, False), ("retrain", False, False)]
    assert chain("classifier", cnn, labels_known=False) == [("laf", False, False), ("retrain", False, False)]
    assert chain("classifier", cnn) == [("retrain", False, False)]
    corrective = get_family("classifier").method_chain(cnn, Scope(kind="corrective"))
    assert [(s.method, s.widen) for s in corrective] == [("ssd", False), ("ssd", True), ("retrain", False)]
    assert corrective[-1].warning == RETRAIN_KEEPS_BACKDOOR
    people, records = folder("people", dataset={"name": "people"}), folder("records", dataset={"name": "records"})
    assert [m for m, _, _ in chain("lm", people)] == ["whp", "npo_klr", "retrain"]
    assert [m for m, _, _ in chain("lm", records)] == ["npo_klr"]  # no recipe: no retrain; whp does not apply
    with_recipe = folder("records-recipe", dataset={"name": "records"}, train={"epochs": 1})
    assert [m for m, _, _ in chain("lm", with_recipe)] == ["npo_klr", "retrain"]
    assert [m for m, _, _ in chain("diffusion", people, type="concept")] == ["sfd", "retrain"]
    assert [m for m, _, _ in chain("diffusion", people, type="subject")] == ["retrain"]


def test_a_corrective_chain_widens_to_the_suspected_samples_then_retrains_with_a_warning(sticky):
    settings, can_retrain = sticky
    if not can_retrain:
        pytest.skip("the retrain step needs the recipe")
    flagged, suspects = ["s-001", "s-002"], ["s-003", "s-004", "s-005"]
    base = {"model": "sticky", "kind": "corrective", "scope": {"type": "samples", "sample_ids": flagged}}
    request, versions, _ = _serve(settings, {**base, "suspect_ids": suspects})
    assert request.status == "completed"
    assert [(v.method, v.status) for v in versions] == [("sticky-miss", "rejected"), ("sticky-forget", "promoted")]
    assert set(versions[1].excluded_ids) == {*flagged, *suspects}  # the widened step forgot the suspects too
    assert versions[1].method_info["widened_by"] == 3

    # without suspects the widening step is skipped, and the retrain's candidate carries its warning
    request, versions, _ = _serve(settings, {**base, "scope": {"type": "samples", "sample_ids": ["s-011"]}})
    assert request.status == "completed" and versions[-1].method == "retrain"
    with session_scope(settings.resolved_database_url) as s:
        from unlearn.store.models import Certificate

        entry = s.get(Certificate, request.id).body["models"][0]
    assert BACKDOOR_NOTE in entry["warning"] and BACKDOOR_NOTE in entry["attempts"][-1]["warning"]
    with pytest.raises(ValueError, match="corrective"):
        _submit(settings, {"model": "sticky", "scope": {"type": "samples", "sample_ids": ["s-020"]},
                           "suspect_ids": ["s-021"]})


def _budget(settings, seconds: float | None) -> None:
    with session_scope(settings.resolved_database_url) as s:
        s.get(Model, "sticky").cost_budget_s = seconds


def test_a_spent_cost_budget_stops_the_chain_for_review(sticky):
    settings, can_retrain = sticky
    if not can_retrain:
        pytest.skip("with no recipe the chain has one method: nothing for a budget to stop")
    _budget(settings, 1e-6)  # the model's own budget, over the settings' two hours
    request, versions, _ = _serve(settings, {"model": "sticky", "scope": {"type": "subject", "subject": "person-5"}})
    assert request.status == "needs_review" and "cost budget" in request.reason and "retrain" in request.reason
    assert [v.method for v in versions] == ["sticky-miss"]  # the retrain never started


def test_a_passed_deadline_stops_the_chain_for_review(sticky):
    settings, can_retrain = sticky
    if not can_retrain:
        pytest.skip("with no recipe the chain has one method: nothing for a deadline to stop")
    rid = _submit(settings, {"model": "sticky", "scope": {"type": "subject", "subject": "person-6"}})
    with session_scope(settings.resolved_database_url) as s:
        s.get(DeletionRequest, rid).due_at = utcnow() - timedelta(minutes=1)
    (job_id,) = _run_pending(settings)
    request, versions, _ = _state(settings, rid, job_id)
    assert request.status == "needs_review" and "deadline" in request.reason
    assert [v.method for v in versions] == ["sticky-miss"]
    # still open past its due date: overdue while it waits for the operator
    assert flags(request, utcnow(), 5) == (True, False)


def _operator(settings) -> tuple[TestClient, dict[str, str]]:
    from api.app import create_app
    from api.auth import create_api_key

    with session_scope(settings.resolved_database_url) as s:
        op, sub = create_api_key(s, "ops", "operator"), create_api_key(s, "t", "submitter")
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    return client, {"op": op, "sub": sub}


def test_only_an_operator_ends_a_request_in_review_rejected_or_retries_it(sticky_db):
    settings = sticky_db
    _budget(settings, 1e-6)
    client, keys = _operator(settings)
    op, sub = {"X-API-Key": keys["op"]}, {"X-API-Key": keys["sub"]}
    ids = [_submit(settings, {"model": "sticky", "scope": {"type": "subject", "subject": f"person-{i}"}})
           for i in (1, 2)]
    _run_pending(settings)  # one job for both: the budget stops its chain after the first method
    body = client.get(f"/v1/deletion-requests/{ids[0]}", headers=op).json()
    assert body["status"] == "needs_review" and body["links"]["decision"].endswith("/decision")
    assert [(a["method"], a["verdict"]) for a in body["attempts"]] == [("sticky-miss", "fail")]
    trail = client.get(f"/v1/deletion-requests/{ids[0]}/audit", headers=op).json()
    assert any(e["to_state"] == "attempt" and e["data"]["method"] == "sticky-miss" and e["data"]["wall_seconds"] > 0
               for e in trail)
    assert any(e["to_state"] == "needs_review" for e in trail)

    url = f"/v1/deletion-requests/{ids[0]}/decision"
    assert client.post(url, json={"action": "reject", "reason": "x"}, headers=sub).status_code == 403
    bad = client.post(url, json={"action": "retry", "reason": "x", "method": "nope"}, headers=op)
    assert bad.status_code == 422 and "unknown method" in bad.json()["detail"]
    rejected = client.post(url, json={"action": "reject", "reason": "the data is held under a legal hold"}, headers=op)
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert "legal hold" in rejected.json()["reason"]
    again = client.post(url, json={"action": "retry", "reason": "x"}, headers=op)
    assert again.status_code == 409 and again.headers["content-type"].startswith("application/problem+json")

    _budget(settings, None)  # the operator lifts the model's budget and retries the other, from the retrain
    retried = client.post(f"/v1/deletion-requests/{ids[1]}/decision",
                          json={"action": "retry", "reason": "budget raised", "method": "retrain"}, headers=op)
    assert retried.status_code == 200 and retried.json()["status"] == "queued" and retried.json()["reason"] is None
    (job_id,) = _run_pending(settings)
    done = client.get(f"/v1/deletion-requests/{ids[1]}", headers=op).json()
    assert done["status"] == "completed" and done["targets"][0]["job_id"] == job_id
    # the attempt before the retry stays the request's, in its attempts and its audit trail
    assert [(a["method"], a["verdict"]) for a in done["attempts"]] == [("sticky-miss", "fail"), ("retrain", "pass")]
    trail = client.get(f"/v1/deletion-requests/{ids[1]}/audit", headers=op).json()
    assert [e["data"]["method"] for e in trail if e["to_state"] == "attempt"] == ["sticky-miss", "retrain"]
    cert = client.get(f"/v1/deletion-requests/{ids[1]}/certificate", headers=op)
    assert cert.status_code == 200


@pytest.mark.integration
@pytest.mark.slow
def test_a_real_worker_takes_a_class_removal_through_a_missing_method_to_the_retrain(tmp_path, zoo_dir):
    """Redis, a prefork Celery worker and PostgreSQL: a request naming a method whose candidate is the model
    unchanged fails its gate, and the same job completes it with the classifier's exact retrain."""
    import signal

    from tests.procs import RedisServer, postgres_database
    from tests.test_faults import Service

    server = RedisServer(tmp_path / "redis").start()
    try:
        with postgres_database() as url:
            svc = Service(tmp_path, zoo_dir, server, database_url=url)
            with session_scope(url) as s:
                rid = submit(s, svc.settings, "t", DeletionRequestIn(
                    model="digits-mlp", method="weak", scope={"type": "class", "label": 3}))[0].id
            svc.celery.send_task("ops.coalesce", kwargs={"force": True})
            with svc.worker("w1"):
                assert svc.wait_final([rid], timeout=180) == ["completed"]
            with session_scope(url) as s:
                versions = s.exec(select(ModelVersion).order_by(ModelVersion.version)).all()
                assert [(v.method, v.status) for v in versions] == [("train", "retired"), ("weak", "rejected"),
                                                                    ("retrain", "promoted")]
                assert versions[1].metrics["verdict"] == "fail" and versions[2].method_info["step"] == 1
                (job,) = svc.jobs()
                assert (job.stage, job.attempts, job.result_version_id) == ("done", 1, versions[2].id)
    finally:
        server.stop(signal.SIGKILL)
