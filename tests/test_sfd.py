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
def test_sfd_candidate_passes_the_gates_and_loads_with_diffusers(teacher, tmp_path):
    facts = sfd(teacher, tmp_path / "sfd", steps=400)  # enough for 0 -> 1 (benchmarks/results/sfd.md)
    assert facts["override"] == (FORGET + 1) % 10 and facts["data_free"]
    meta = read_meta(tmp_path / "sfd")
    assert meta["sampler"] == "onestep" and meta["forgotten"] == {str(FORGET): 1}
    pipe = DigitsDiffusionPipeline.from_pretrained(str(tmp_path / "sfd"))
    assert pipe.config.sampler == "onestep"
    assert UNet2DModel.from_pretrained(str(tmp_path / "sfd" / "unet")).config.num_class_embeds == 10

    v = verdict(tmp_path / "sfd", teacher, tmp_path / "report")
    assert v.passed, v.reasons
    assert v.info["override_rate"] > 0.5  # the forgotten digit became the override digit
    assert (tmp_path / "report" / "diffusion_samples.png").exists()


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
