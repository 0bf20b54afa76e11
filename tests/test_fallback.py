"""An `auto` request whose first method's candidate fails the gate goes on to the family's next method
(the exact retrain): the failed candidate stays `rejected` with its verdict, the request completes with
the retrain. A method an operator named is tried alone, and a model that cannot be retrained ends
`rejected` with the verdict, as before."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from tests.test_recipes import _memory
from tests.test_recipes import _write as write_memory
from unlearn import methods, registry
from unlearn.coalesce import coalesce
from unlearn.contracts import Progress, SampleRecord, Scope, no_progress
from unlearn.families import Family, register_family
from unlearn.intake import DeletionRequestIn, submit
from unlearn.jobs import run_job
from unlearn.methods.base import MethodSpec, UnlearnTask
from unlearn.store.db import session_scope
from unlearn.store.models import AuditEvent, DeletionRequest, ModelVersion
from unlearn.verify import Verdict, criterion

N = 30


def _write(out_dir: Path, memory: Sequence[str], **meta: Any) -> None:
    write_memory(out_dir, memory, family="sticky", **meta)


class StickyFamily(Family):
    """A model that is the set of ids it saw; its `auto` method forgets nothing (a method that misses)."""

    name = "sticky"
    criteria = ("forget_recall",)
    gate_defaults = {"forget_recall_max": 0.0}

    def samples(self, model_dir: Path) -> list[SampleRecord]:
        return [SampleRecord(f"s-{i:03d}", subject=f"person-{i % 10}") for i in range(N)]

    def auto_method(self, model_dir: Path, scope: Scope) -> str:
        return "sticky-miss"

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
    return {}


MISS = MethodSpec(name="sticky-miss", families=("sticky",), run=sticky_miss, needs_labels=False)


@pytest.fixture(params=[True, False], ids=["recipe", "no-recipe"])
def sticky(request, settings, tmp_path):
    register_family("sticky", f"{__name__}:StickyFamily")
    methods.register_method("sticky-miss", f"{__name__}:MISS")
    source = tmp_path / "sticky-v1"
    _write(source, [f"s-{i:03d}" for i in range(N)], **({} if request.param else {"no_recipe": True}))
    with session_scope(settings.resolved_database_url) as s:
        registry.import_model(s, name="sticky", family="sticky", source_dir=source,
                              artifact_root=settings.resolved_artifact_root, salt=settings.subject_salt)
    yield settings, request.param
    from unlearn import families

    families._FAMILIES.pop("sticky", None)
    families._cache.pop("sticky", None)
    methods.METHODS.pop("sticky-miss", None)


def _serve(settings, body: dict) -> tuple[DeletionRequest, list[ModelVersion], list[AuditEvent]]:
    with session_scope(settings.resolved_database_url) as s:
        request, _ = submit(s, settings, "t", DeletionRequestIn(**body))
        (job_id,) = coalesce(s, settings, force=True)
    run_job(settings, job_id, "test-worker")
    with session_scope(settings.resolved_database_url) as s:
        versions = list(s.exec(select(ModelVersion).where(ModelVersion.model_name == "sticky", ModelVersion.version > 1)
                               .order_by(ModelVersion.version)).all())
        events = list(s.exec(select(AuditEvent).where(AuditEvent.entity_id == job_id,
                                                      AuditEvent.to_state == "next_method")).all())
        return s.get(DeletionRequest, request.id), versions, events


def test_an_auto_request_goes_on_to_the_retrain_when_the_first_candidate_fails(sticky):
    settings, can_retrain = sticky
    request, versions, events = _serve(settings, {"model": "sticky", "scope": {"type": "subject", "subject": "person-3"}})
    assert versions[0].method == "sticky-miss" and versions[0].status == "rejected"
    assert not versions[0].metrics["criteria"]["forget_recall"]["passed"]  # its verdict is kept
    if can_retrain:
        assert request.status == "completed", request.reason
        assert [(v.method, v.status) for v in versions] == [("sticky-miss", "rejected"), ("retrain", "promoted")]
        assert len(events) == 1 and "sticky-miss" in events[0].reason
    else:  # nothing can follow: rejected with the verdict, as before
        assert request.status == "rejected" and "forget_recall" in request.reason
        assert len(versions) == 1 and events == []


def test_a_method_an_operator_named_is_tried_alone(sticky):
    request, versions, _ = _serve(sticky[0], {"model": "sticky", "method": "sticky-miss",
                                           "scope": {"type": "samples", "sample_ids": ["s-001", "s-002"]}})
    assert request.status == "rejected" and [v.method for v in versions] == ["sticky-miss"]


def test_parameters_an_operator_set_keep_auto_to_its_one_method(sticky):
    settings, _ = sticky
    request, versions, _ = _serve(settings, {"model": "sticky", "params": {"strength": 2},
                                             "scope": {"type": "subject", "subject": "person-4"}})
    assert request.status == "rejected" and [v.method for v in versions] == ["sticky-miss"]
