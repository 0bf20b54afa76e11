"""An LM method forgets on the default people world where doing nothing does not (one slow run).

The gate's bars are the spread between exact retrains (benchmarks/results/gate_calibration.md), and
C3 reads the raw documents pooled and per kind. A pass of every gate on one seed is a draw (whp's rate
over seeds is in benchmarks/results/muse.md), so this asserts what one run can show: the unchanged
original fails C1, C2 and every C3 by far; whp's candidate meets C1 and C4, lands within twice the pooled
C3 band, and each kind's C3 at most three quarters as far from the retrain as the original's. Its own
file, so that it runs beside test_lm.py.
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
    c3 = ("privleak", "privleak_bio", "privleak_qa")
    assert set(crit) == {"verbmem", "knowmem_forget", *c3, "knowmem_retain"}
    assert all(crit[name].passed for name in ("verbmem", "knowmem_retain")), verdict.reasons
    assert abs(crit["privleak"].value) <= 2 * crit["privleak"].threshold, verdict.reasons
    nothing = {c.name: c for c in get_family("lm").verify(target, reference, world.forget, world.retain,
                                                          Scope(type="subject")).criteria}
    assert not nothing["verbmem"].passed and not nothing["knowmem_forget"].passed
    assert all(not nothing[name].passed and nothing[name].value < -0.5 for name in c3)  # AUC near 0
    # per kind, whp's biographies can land on the over-unlearned side (benchmarks/results/muse.md); what one
    # run shows is that each kind is at most three quarters as far from the retrain as doing nothing's
    assert all(abs(crit[name].value) <= 0.75 * abs(nothing[name].value) for name in c3), verdict.reasons
