"""An LM method forgets on the default people world where doing nothing does not (one slow run).

On a 15-person forget fold the gate is of the order of seed noise: exact retrains with other seeds pass
it 3 times in 4 (benchmarks/results/muse_gate_noise.md), and whp passed on 3 of seeds 0–4
(benchmarks/results/muse.md). A pass of all four on one seed is a draw: seed 1's C3 read −2.6% with the
libraries of that table and +5.4% (band ±5%) with those installed on 2026-12-07, the project's code
unchanged. So this asserts what one run can show: the unchanged original fails C1 and C3 by far, whp's
candidate meets C1, C2 and C4 and lands within twice C3's band. Its own file, so that it runs beside
test_lm.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from unlearn.families import Scope, get_family
from unlearn.families.lm import world_of
from unlearn.methods import UnlearnTask, get_method
from unlearn.zoo import ensure


@pytest.mark.slow
def test_whp_forgets_on_the_default_world_where_doing_nothing_does_not(zoo_dir: Path, tmp_path: Path) -> None:
    target, reference = ensure("people-lm", zoo_dir), ensure("people-lm-retrain", zoo_dir)
    world = world_of(target)
    get_method("whp").run(UnlearnTask("lm", target, tmp_path / "cand", list(world.forget), list(world.retain),
                                      params={"seed": 1}))
    verdict = get_family("lm").verify(tmp_path / "cand", reference, world.forget, world.retain,
                                      Scope(type="subject"))
    crit = {c.name: c for c in verdict.criteria}
    assert set(crit) == {"verbmem", "knowmem_forget", "privleak", "knowmem_retain"}
    assert all(crit[name].passed for name in ("verbmem", "knowmem_forget", "knowmem_retain")), verdict.reasons
    assert abs(crit["privleak"].value) <= 2 * crit["privleak"].threshold, verdict.reasons
    nothing = {c.name: c for c in get_family("lm").verify(target, reference, world.forget, world.retain,
                                                          Scope(type="subject")).criteria}
    assert not nothing["verbmem"].passed and not nothing["privleak"].passed
    assert abs(nothing["privleak"].value) > 4 * crit["privleak"].threshold
