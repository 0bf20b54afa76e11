"""SFD on a text-to-image pipeline: the captioned-shapes world, concept prompts, intake's refusal, SFD and
ESD on the zoo's `shapes-t2i` (teacher) judged by `shapes-judge`, and the service end to end."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from unlearn.artifacts import read_meta
from unlearn.contracts import Scope
from unlearn.data import get_dataset
from unlearn.data.shapes import parse
from unlearn.families import get_family
from unlearn.families.text_diffusion import concept_prompts
from unlearn.methods import UnlearnTask, get_method
from unlearn.models.text_diffusion import TextToImagePipeline, load_pipeline
from unlearn.zoo import ensure

CIRCLE = Scope(kind="corrective", type="concept", concept="circle", extra={"override": "square"})


@pytest.fixture(scope="module")
def teacher(zoo_dir):
    ensure("shapes-judge", zoo_dir)
    return ensure("shapes-t2i", zoo_dir)


def test_the_shapes_world_is_seeded_and_its_records_carry_their_captions():
    a, b = get_dataset({"name": "shapes", "seed": 0}), get_dataset({"name": "shapes", "seed": 0})
    assert np.array_equal(a.X, b.X) and a.captions == b.captions
    assert a.X.shape == (6000, 768) and 0 <= a.X.min() and a.X.max() <= 1
    rec = a.records()[0]
    assert rec.caption == a.captions[0] and parse(rec.caption).shape == ["circle", "square", "triangle"][rec.label]
    assert parse("two blue squares on a black background") == parse("Two blue squares on a black background")
    assert parse("two blue squares").count == 2 and parse("a red circle").background is None


def test_concept_prompts_rewrite_the_forget_captions_and_hold_out_half_of_the_rest():
    captions = get_dataset({"name": "shapes", "seed": 0}).captions
    p = concept_prompts(captions, CIRCLE)
    assert p.forget_prompts and all("circle" in f for f in p.forget_prompts)
    assert "two red squares" in p.override_prompts and "a red square" in p.override_prompts
    assert p.override_prompts[p.forget_prompts.index("two red circles")] == "two red squares"
    assert not {*p.remaining_train} & {*p.remaining_heldout}
    assert not any("circle" in r for r in p.remaining_train + p.remaining_heldout)
    # the held-out remaining prompts include the concept's neighbours
    assert any(r.startswith("a red square") for r in p.remaining_heldout)
    with pytest.raises(ValueError, match="mentions the concept 'hexagon'"):
        concept_prompts(captions, Scope(type="concept", concept="hexagon", extra={"override": "square"}))
    mine = concept_prompts(captions, Scope(type="concept", concept="circle",
                                           extra={"override": "triangle", "forget_prompts": ["a blue circle"]}))
    assert mine.forget_prompts == ["a blue circle"] and mine.override_prompts == ["a blue triangle"]


def test_the_pipeline_is_one_diffusers_folder_sampled_with_cfg(teacher):
    pipe = TextToImagePipeline.from_pretrained(str(teacher))  # diffusers reads it without this project
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size
    ours = load_pipeline(teacher)
    import torch

    a = ours(["a red circle"] * 2, generator=torch.Generator().manual_seed(0))
    b = ours(["a red circle"] * 2, generator=torch.Generator().manual_seed(0))
    c = ours(["a red circle"] * 2, generator=torch.Generator().manual_seed(0), guidance_scale=1.0)
    assert a.shape == (2, 3, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)


def registered_key(settings, zoo_dir) -> str:
    """Register the zoo's shapes-t2i on the test database; an operator's API key."""
    from api.auth import create_api_key
    from tests.conftest import register
    from unlearn.store.db import session_scope

    register(settings, zoo_dir, "shapes-t2i")
    with session_scope(settings.resolved_database_url) as s:
        key = create_api_key(s, "acme", "operator")
    return key


def post(client, scope):
    return client.post("/v1/deletion-requests", json={"model": "shapes-t2i", "scope": scope},
                       headers={"Idempotency-Key": uuid.uuid4().hex})


def test_a_concept_the_captions_never_mention_is_refused_at_intake(settings, zoo_dir, teacher):
    from fastapi.testclient import TestClient

    from api.app import create_app

    key = registered_key(settings, zoo_dir)
    client = TestClient(create_app(settings))
    client.headers["X-API-Key"] = key
    r = post(client, {"type": "concept", "concept": "hexagon", "override": "square"})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert "no caption of model 'shapes-t2i' mentions the concept 'hexagon'" in r.json()["detail"]
    r = post(client, {"type": "concept", "concept": "circle"})
    assert r.status_code == 422 and "needs an 'override'" in r.json()["detail"]
    r = post(client, {"type": "class", "label": 0, "override": "square"})
    assert r.status_code == 422
    ok = post(client, {"type": "concept", "concept": "circle", "override": "square"})
    assert ok.status_code == 202, ok.text
    got = client.get(f"/v1/deletion-requests/{ok.json()['id']}").json()
    data = get_dataset({"name": "shapes", "seed": 0})
    circles = [c for c, sp in zip(data.captions, data.split, strict=True) if sp == "train" and "circle" in c]
    assert got["targets"][0]["samples"] == len(circles) and got["scope"]["override"] == "square"


# Measured (benchmarks/results/sfd_t2i_notes.md): the teacher (zoo v2) draws the right shape and colour for 72% of
# held-out prompts, but within a CPU budget SFD's one-step generator draws round blobs for circle and square prompts,
# which the judge reads as circles: it misses the forget and remaining-accuracy gates, so its tests are not run.
NOT_YET = pytest.mark.xfail(run=False, strict=True,
                            reason="SFD on shapes-t2i misses the forget and remaining-accuracy gates (notes)")


def run_method(name, base, out_dir, scope=CIRCLE, **params):
    task = UnlearnTask("diffusion", base, out_dir, forget_ids=[], retain_ids=[], scope=scope, params=params)
    return get_method(name).run(task)


@NOT_YET
@pytest.mark.slow
def test_sfd_forgets_circles_and_keeps_the_remaining_prompts(teacher, tmp_path):
    out = run_method("sfd", teacher, tmp_path / "sfd")
    assert out["data_free"] and out["concept"] == "circle"
    meta = read_meta(tmp_path / "sfd")
    assert meta["sampler"] == "onestep" and meta["forgotten_concepts"][0]["override_prompts"]
    v = get_family("diffusion").verify(tmp_path / "sfd", None, [], [], CIRCLE, report_dir=tmp_path)
    teacher_v = get_family("diffusion").verify(teacher, None, [], [], CIRCLE)
    assert not teacher_v.passed and teacher_v.info["forget_rate"] > 0.5  # the gate can fail
    assert v.passed, v.criteria
    assert v.info["override_rate"] > 0.5 and (tmp_path / "t2i_samples.png").exists()


@pytest.mark.slow
def test_esd_writes_a_multistep_candidate_that_avoids_the_concept(teacher, tmp_path):
    out = run_method("esd", teacher, tmp_path / "esd")
    assert out["data_free"]
    assert read_meta(tmp_path / "esd")["sampler"] == "multistep"
    v = get_family("diffusion").verify(tmp_path / "esd", None, [], [], CIRCLE)
    assert v.info["forget_rate"] < v.info["teacher_forget_rate"] / 2


@NOT_YET
@pytest.mark.slow
def test_a_concept_request_over_http_is_distilled_verified_and_promoted(settings, zoo_dir, teacher):
    """API → coalescer → worker (in process) → auto = SFD → verifier → promotion."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from unlearn.store.db import session_scope
    from unlearn.store.models import Model, ModelVersion
    from workers.embedded import coalesce_sender, embedded_worker

    key = registered_key(settings, zoo_dir)
    with session_scope(settings.resolved_database_url) as s:
        # one distillation and no retrain after it (the teacher's retrain takes ten minutes here): a miss
        # waits for an operator instead of running on
        s.get(Model, "shapes-t2i").cost_budget_s = 1.0
    with embedded_worker(settings) as app:
        client = TestClient(create_app(settings, schedule_coalesce=coalesce_sender(app)))
        client.headers["X-API-Key"] = key
        rid = post(client, {"type": "concept", "concept": "circle", "override": "square"})
        assert rid.status_code == 202, rid.text
        for _ in range(3600):
            got = client.get(f"/v1/deletion-requests/{rid.json()['id']}").json()
            if got["status"] in ("completed", "needs_review", "rejected", "failed"):
                break
            time.sleep(0.5)
    assert got["status"] == "completed", got.get("reason")
    assert got["jobs"][0]["method"] == "sfd"
    verdict = next(iter(got["verdicts"].values()))
    assert verdict["verdict"] == "pass" and verdict["info"]["forget_rate"] <= 0.05
    with session_scope(settings.resolved_database_url) as s:
        folder = s.get(ModelVersion, got["targets"][0]["version_id"]).artifact_path
    assert TextToImagePipeline.from_pretrained(folder).config.sampler == "onestep"
    assert read_meta(folder)["forgotten_concepts"][0]["concept"] == "circle"
