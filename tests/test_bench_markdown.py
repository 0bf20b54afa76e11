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
