"""An LM method passes the MUSE gate's four criteria on the default people world (one slow run).

On a 15-person forget fold the gate is of the order of seed noise: exact retrains with other seeds pass
it 3 times in 4 (benchmarks/results/muse_gate_noise.md), and whp passes on 3 of seeds 0–4, missing C2
by guessing on the other two (benchmarks/results/muse.md). This runs seed 1, one of the passing seeds,
so a change that breaks a passing run fails here; its own file, so that it runs beside test_lm.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from unlearn.families import Scope, get_family
from unlearn.families.lm import world_of
from unlearn.methods import UnlearnTask, get_method
from unlearn.zoo import ensure


@pytest.mark.slow
def test_whp_passes_all_four_gates_on_the_default_world(zoo_dir: Path, tmp_path: Path) -> None:
    target, reference = ensure("people-lm", zoo_dir), ensure("people-lm-retrain", zoo_dir)
    world = world_of(target)
    get_method("whp").run(UnlearnTask("lm", target, tmp_path / "cand", list(world.forget), list(world.retain),
                                      params={"seed": 1}))
    verdict = get_family("lm").verify(tmp_path / "cand", reference, world.forget, world.retain,
                                      Scope(type="subject"))
    crit = {c.name: c for c in verdict.criteria}
    assert set(crit) == {"verbmem", "knowmem_forget", "privleak", "knowmem_retain"}
    assert verdict.passed, verdict.reasons
