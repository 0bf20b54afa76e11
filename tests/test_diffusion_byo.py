"""A team's class-conditional diffusers pipeline: loaded as it was saved, checked before registration,
and forgetting a customer's images by the exact retrain."""

import json

import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

from examples.byo.digits_pipeline import build_digits_pipeline
from tests.conftest import cached_build
from unlearn.contracts import Scope
from unlearn.data import records
from unlearn.families import get_family
from unlearn.models import class_diffusion


@pytest.fixture(scope="module")
def team(zoo_dir, tmp_path_factory):
    """The stand-in pipeline, its judge and its records folder (built once, cached beside the zoo)."""
    folder = cached_build(zoo_dir, "byo-digits-pipeline", build_digits_pipeline, "digits-judge/unlearn.json")
    rows, shape = records.normalise(records.read_table(folder / "digits-pipeline-records.parquet"),
                                    records.FieldMap(id="sample_id", subject="owner", label="label", image="image",
                                                     split="split"), salt="test")
    out = tmp_path_factory.mktemp("records")
    records.save(rows, out, image_shape=shape)
    return {"pipeline": folder / "digits-pipeline", "judge": folder / "digits-judge",
            "recipe": json.loads((folder / "digits-pipeline-recipe.json").read_text()), "records": records.load(str(out))}


def test_a_ddpm_pipeline_folder_loads_and_runs_one_record(team):
    pipe = class_diffusion.load_pipeline(team["pipeline"])
    assert json.loads((team["pipeline"] / "model_index.json").read_text())["_class_name"] == "DDPMPipeline"
    assert pipe.config.sampler == "multistep" and pipe.unet.config.num_class_embeds == 10
    get_family("diffusion").check_forward(team["pipeline"], team["records"])
    images = class_diffusion.generate(pipe, [3, 7], seed=0, num_inference_steps=2)
    assert images.shape == (2, 64) and torch.isfinite(torch.as_tensor(images)).all()


def _save(tmp_path, unet, scheduler):
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(str(tmp_path / "p"))
    return tmp_path / "p"


@pytest.mark.parametrize("fault, message", [
    ("unconditional", "not class-conditional"),
    ("schedule", "beta_end"),
    ("shape", "the UNet takes (1, 16, 16)"),
    ("classes", "beyond the UNet's 5 classes"),
])
def test_a_pipeline_the_family_cannot_serve_is_refused_with_its_reason(team, tmp_path, fault, message):
    cfg = {**class_diffusion.UNET_CONFIG}
    sched = class_diffusion.new_scheduler()
    if fault == "unconditional":
        cfg.pop("num_class_embeds")
    elif fault == "schedule":
        sched = DDPMScheduler(**{**class_diffusion.SCHEDULE, "beta_end": 0.03})
    elif fault == "shape":
        cfg["sample_size"] = 16
    else:
        cfg["num_class_embeds"] = 5
    folder = _save(tmp_path, UNet2DModel(**cfg), sched)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        get_family("diffusion").check_forward(folder, team["records"])


def test_registration_keys_need_a_judge_and_a_recipe(team):
    fam = get_family("diffusion")
    meta = fam.byo_meta(team["pipeline"], team["records"], {"judge_dir": team["judge"], "recipe": team["recipe"]})
    assert meta["unet_config"]["num_class_embeds"] == 10 and meta["train"]["steps"] == team["recipe"]["steps"]
    assert class_diffusion.new_unet(meta["unet_config"]).config.sample_size == 8
    with pytest.raises(ValueError, match="judge"):
        fam.byo_meta(team["pipeline"], team["records"], {"recipe": team["recipe"]})
    with pytest.raises(ValueError, match="steps"):
        fam.byo_meta(team["pipeline"], team["records"], {"judge_dir": team["judge"], "recipe": {"lr": 1e-3}})


def test_a_customers_images_are_forgotten_by_the_exact_retrain():
    fam = get_family("diffusion")
    assert fam.auto_method(None, Scope(type="subject")) == "retrain"
    assert fam.auto_method(None, Scope(type="samples")) == "retrain"
    assert fam.auto_method(None, Scope(type="class", label=3)) == "sfd"
