"""The benchmark pages and the README's tables are what their scripts write from the stored JSON.

For every benchmark with a markdown-only mode, rebuilding its page from `benchmarks/results/NAME.json` (and its
author notes, `benchmarks/notes/NAME.md`) must give the committed `NAME.md` byte for byte; and the README's
`<!-- bench:NAME -->` blocks must equal what `benchmarks/update_readme.py` writes from those pages. A figure
edited by hand in a page or in the README, or a JSON rerun without its page, fails here.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks import update_readme

RESULTS = update_readme.RESULTS


def _gate_power() -> str:
    # gate_power's --markdown-only writes markdown() of its JSON, with no author notes
    module = importlib.import_module("benchmarks.gate_power")
    return module.markdown(json.loads((RESULTS / "gate_power.json").read_text()))


def _regenerate(name: str) -> Callable[[], str]:
    return lambda: importlib.import_module(f"benchmarks.{name}").regenerate(RESULTS)


REGENERATED = ("acu", "bulk_scope", "byo_lm", "corrective", "demo_fallback", "gate_calibration", "intake", "laf",
               "lineage_import", "muse", "muse_gate_noise", "muse_tradeoff", "reference_policies", "sfd")
PAGES: dict[str, Callable[[], str]] = {**{name: _regenerate(name) for name in REGENERATED}, "gate_power": _gate_power}


@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_regenerates_from_its_json(name: str) -> None:
    committed = (RESULTS / f"{name}.md").read_text()
    assert PAGES[name]() == committed, f"benchmarks/results/{name}.md differs from its --markdown-only rebuild"


def test_readme_blocks_equal_the_pages() -> None:
    readme = (update_readme.ROOT / "README.md").read_text()
    assert update_readme.render(readme) == readme, "run `python -m benchmarks.update_readme`"


def test_a_hand_edited_figure_is_caught(tmp_path: Path) -> None:
    """The check can fail: a page whose figure no longer matches its JSON is not what the script rebuilds."""
    report = json.loads((RESULTS / "acu.json").read_text())
    report["rows"][0]["rel_error"] *= 10
    (tmp_path / "acu.json").write_text(json.dumps(report))
    rebuilt = importlib.import_module("benchmarks.acu").regenerate(tmp_path)
    assert rebuilt != (RESULTS / "acu.md").read_text()
    assert "8.2e-11" in rebuilt


def _outcome(refused: bool, failed: tuple[str, ...] = ()) -> dict:
    return {"refused": refused, "failed": list(failed), "reasons": [], "values": {}}


def test_gate_power_merges_a_family_and_keeps_the_others() -> None:
    """A run of one family replaces that family's rows of the same model and scope, keeps its rows of other
    scopes and every other family's rows; the page gets one table per family with the counts and intervals."""
    gp = importlib.import_module("benchmarks.gate_power")
    stored = {"families": {"classifier": gp.load(RESULTS / "gate_power.json")["families"]["classifier"]}}
    classifier_rows = stored["families"]["classifier"]["rows"]
    settings = {"draws": 2, "retrains": 1, "torch_threads": 1, "device": "cpu", "seconds": 1.0, "n_per_class": 100,
                "thresholds": {"forget_rate": 0.05, "retained_acc_ratio": 0.95, "retained_fd_ratio": 1.25}}
    lm = gp.draw_row("lm", "people-lm", "subject", [
        {"forget": "person-0001", "do_nothing": _outcome(True, ("verbmem", "privleak")),
         "other_seeds": [_outcome(False)]},
        {"forget": "person-0002", "do_nothing": _outcome(False), "other_seeds": [_outcome(True, ("privleak",))]}])
    older = {**lm, "scope": "fold", "draws": 9}
    result = gp.merged(gp.merged(stored, "lm", settings, [older]), "lm", settings, [lm])
    assert result["families"]["classifier"]["rows"] == classifier_rows
    assert [(r["scope"], r["draws"]) for r in result["families"]["lm"]["rows"]] == [("subject", 2), ("fold", 9)]
    diffusion = gp.draw_row("diffusion", "digits-diffusion", "class", [
        {"forget": "class 3", "do_nothing": _outcome(True, ("forget_rate",)),
         "other_seeds": [{**_outcome(False), "values": {"forget_rate": 0.03},
                          "against_original_teacher": {"retained_acc_ratio": 0.97, "retained_fd_ratio": 1.1}}]}])
    page = gp.markdown(gp.merged(result, "diffusion", settings, [diffusion]))
    assert list(result["families"]) == ["classifier", "lm"]
    assert page.index("### classifier") < page.index("### lm") < page.index("### diffusion")
    assert "| people-lm | subject | person-0001, person-0002 | 1/2 (0.01–0.99) | privleak ×1, verbmem ×1 " \
           "| 1/2 (0.01–0.99) | privleak ×1 |" in page
    assert "| digits-diffusion | class | class 3 | 1/1 (0.03–1.00) | forget_rate ×1 | 0/1 (0.00–0.97) | – |" in page
    assert "span accuracy [0.970, 0.970] (gate ≥ 0.95) and Fréchet distance [1.100, 1.100] (gate ≤ 1.25)" in page
    assert "forget rates reach 0.03 at most (gate ≤ 0.05, 100 generations per class)" in page


def test_gate_power_lm_draws_extend_and_stay_in_the_trained_people() -> None:
    """A longer run's LM forget sets start with a shorter run's; samples-N draws N distinct trained people."""
    gp = importlib.import_module("benchmarks.gate_power")
    trained = [f"person-{i:04d}" for i in range(0, 200, 2)]
    for scope in ("subject", "samples-15"):
        short, long = gp.lm_forget_sets(trained, scope, 2), gp.lm_forget_sets(trained, scope, 4)
        assert [ids for _, ids, _ in long[:2]] == [ids for _, ids, _ in short]
    sets = gp.lm_forget_sets(trained, "samples-15", 3)
    assert all(len(set(ids)) == 15 and set(ids) <= set(trained) for _, ids, _ in sets)
    assert sets[0][1] != sets[1][1] and sets[0][2].type == "samples"
    assert [s.type for _, _, s in gp.lm_forget_sets(trained, "subject", 2)] == ["subject", "subject"]
