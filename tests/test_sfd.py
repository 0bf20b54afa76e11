"""Diffusion family + Score Forgetting Distillation at library level.

The teacher (digits-diffusion) and the judge (digits-judge) come from the zoo cache. The SFD
run here uses 400 steps (half the default; enough for digit 0); the end-to-end API test lives with the service.
"""

from __future__ import annotations

import numpy as np
import pytest
from diffusers import UNet2DModel

from unlearn.artifacts import read_meta
from unlearn.data import get_dataset
from unlearn.families import Scope, get_family
from unlearn.families.diffusion import forgotten_class
from unlearn.methods import MethodError, UnlearnTask, get_method, methods_for
from unlearn.models.class_diffusion import DigitsDiffusionPipeline
from unlearn.verify.diffusion import frechet_distance
from unlearn.zoo import ensure

FORGET = 0  # forgotten digit in these tests; the override defaults to 1
SCOPE = Scope(kind="corrective", type="concept", label=FORGET)


@pytest.fixture(scope="module")
def teacher(zoo_dir):
    ensure("digits-judge", zoo_dir)  # next to the teacher, where the family looks for it
    return ensure("digits-diffusion", zoo_dir)


def sfd(teacher, out_dir, **params):
    task = UnlearnTask("diffusion", teacher, out_dir, forget_ids=[], retain_ids=[], scope=SCOPE, params=params)
    return get_method("sfd").run(task)


def verdict(candidate, teacher, tmp_path=None):
    return get_family("diffusion").verify(candidate, teacher, [], [], SCOPE, report_dir=tmp_path)


def test_frechet_distance_is_zero_for_one_sample_set_and_grows_with_a_shift():
    x = np.random.default_rng(0).normal(size=(500, 4))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(x, x + 1.0) == pytest.approx(4.0, rel=1e-3)


def test_a_request_resolves_to_one_forgotten_class():
    assert "sfd" in methods_for("diffusion") and "erasure-finetune" in methods_for("diffusion")
    dataset = {"name": "digits", "seed": 0}
    data = get_dataset(dataset)
    threes = [s for s in data.ids_in("train") if data.y[data.index[s]] == 3][:5]
    assert forgotten_class(Scope(type="class"), threes, dataset) == 3
    assert forgotten_class(Scope(type="concept", concept="4"), [], dataset) == 4
    with pytest.raises(ValueError):
        forgotten_class(Scope(type="samples"), data.ids_in("train")[:50], dataset)


def test_teacher_fails_the_forget_gate(teacher):
    fam = get_family("diffusion")
    assert fam.auto_method(teacher, SCOPE) == "sfd"
    assert {r.label for r in fam.samples(teacher)} == set(range(10))
    v = verdict(teacher, teacher)
    assert not v.passed
    assert v.info["teacher_forget_rate"] > 0.9  # the teacher draws the digit it is asked for
    assert [r.split("=")[0] for r in v.reasons] == ["forget_rate"]
    # The teacher's judged samples are cached next to (not inside) its manifest-checked folder.
    assert list((teacher.parent / f".{teacher.name}.judged").glob("*.npz"))


@pytest.mark.slow
def test_concept_requests_through_the_api_promote_sfd_and_hold_a_cut_short_run_for_review(settings, zoo_dir, teacher):
    """End to end: API → coalescer → Celery worker (in process) → SFD → verifier → promotion."""
    import time
    import uuid

    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.auth import create_api_key
    from tests.conftest import register
    from unlearn.store.db import session_scope
    from unlearn.store.models import Model, ModelVersion
    from workers.embedded import coalesce_sender, embedded_worker

    register(settings, zoo_dir, "digits-diffusion")
    with session_scope(settings.resolved_database_url) as s:
        key = create_api_key(s, "acme", "operator")
        # a budget that lets one distillation run and no retrain after it (the teacher's retrain takes minutes)
        s.get(Model, "digits-diffusion").cost_budget_s = 1.0
    with embedded_worker(settings) as app:
        client = TestClient(create_app(settings, schedule_coalesce=coalesce_sender(app)))
        client.headers["X-API-Key"] = key

        def run(concept, params):
            body = {"model": "digits-diffusion", "scope": {"type": "concept", "concept": concept}, "params": params}
            rid = client.post("/v1/deletion-requests", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
            assert rid.status_code == 202, rid.text
            for _ in range(1800):
                got = client.get(f"/v1/deletion-requests/{rid.json()['id']}").json()
                if got["status"] in ("completed", "needs_review", "rejected", "failed"):
                    return got
                time.sleep(0.5)
            raise TimeoutError(got["status"])

        short = run("digit-5", {"steps": 3})  # cut short: barely distilled, must not be promoted
        done = run(f"digit-{FORGET}", {"steps": 400})  # enough for 0 -> 1 (benchmarks/results/sfd.md)
    # the chain's next step, the teacher's retrain, does not fit the model's budget: an operator decides
    assert short["status"] == "needs_review" and "forget_rate" in short["reason"] and "cost budget" in short["reason"]
    assert done["status"] == "completed", done["reason"]
    assert done["jobs"][0]["method"] == "sfd"
    verdict_ = next(iter(done["verdicts"].values()))
    assert verdict_["verdict"] == "pass" and verdict_["info"]["override_rate"] > 0.5
    with session_scope(settings.resolved_database_url) as s:
        folder = s.get(ModelVersion, done["targets"][0]["version_id"]).artifact_path
    pipe = DigitsDiffusionPipeline.from_pretrained(folder)  # a diffusers-compatible pipeline
    assert pipe.config.sampler == "onestep"
    assert UNet2DModel.from_pretrained(f"{folder}/unet").config.num_class_embeds == 10
    assert read_meta(folder)["forgotten"] == {str(FORGET): 1}


def test_sfd_run_cut_short_is_rejected(teacher, tmp_path):
    sfd(teacher, tmp_path / "short", steps=3)
    v = verdict(tmp_path / "short", teacher)
    assert not v.passed
    failed = {r.split("=")[0] for r in v.reasons}
    # Barely distilled: still draws the forgotten digit, and blurry (accuracy alone would pass it).
    assert {"forget_rate", "retained_fd_ratio"} <= failed


def test_erasure_finetune_writes_a_multistep_candidate(teacher, tmp_path):
    task = UnlearnTask("diffusion", teacher, tmp_path / "eft", [], [], scope=SCOPE,
                       params={"steps": 3, "pool_per_class": 4, "pool_inference_steps": 2})
    facts = get_method("erasure-finetune").run(task)
    meta = read_meta(tmp_path / "eft")
    assert facts["override"] == 1 and meta["sampler"] == "multistep"
    assert meta["teacher_dir"] == str(teacher.resolve())
    with pytest.raises(MethodError):
        get_method("sfd").run(UnlearnTask("diffusion", teacher, tmp_path / "bad", [], [], scope=SCOPE,
                                          params={"stepz": 3}))


def test_the_judge_is_found_from_the_artifact_alone(tmp_path):
    from unlearn.artifacts import write_meta
    from unlearn.families.diffusion import judge_dir_of

    judge = tmp_path / "zoo" / "digits-judge"
    write_meta(judge, {"family": "classifier", "model": "digits-judge"})
    teacher = tmp_path / "artifacts" / "v1"  # a registered copy: no judge beside it
    write_meta(teacher, {"family": "diffusion", "sampler": "multistep", "judge": "digits-judge",
                         "judge_dir": str(judge)})
    candidate = tmp_path / "artifacts" / "v2"
    write_meta(candidate, {"family": "diffusion", "sampler": "onestep", "teacher_dir": str(teacher)})
    assert judge_dir_of(teacher) == judge and judge_dir_of(candidate) == judge
    old = tmp_path / "zoo" / "digits-diffusion"  # written before teachers recorded their judge
    write_meta(old, {"family": "diffusion", "sampler": "multistep", "judge": "digits-judge"})
    assert judge_dir_of(old) == judge
    orphan = tmp_path / "artifacts" / "v3"
    write_meta(orphan, {"family": "diffusion", "sampler": "multistep", "judge": "digits-judge"})
    with pytest.raises(ValueError, match="no judge for the diffusion model") as error:
        judge_dir_of(orphan)
    assert str(tmp_path / "artifacts" / "digits-judge") in str(error.value)  # names where it looked
