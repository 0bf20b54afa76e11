"""Benchmark timings that compare like with like: a cached retrain is not timed at about 0 s, and the MUSE
page says under which load the retrain and the methods were timed."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks import muse, sfd


class _SlowFamily:
    """A family whose retrain takes at least 50 ms and leaves a model folder, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def retrain(self, teacher: Path, keep: list[str], out: Path, device: str) -> None:
        self.calls += 1
        time.sleep(0.05)
        out.mkdir(parents=True)
        (out / "unlearn.json").write_text("{}")


def test_a_reused_reference_reports_the_time_measured_when_it_was_built(tmp_path: Path) -> None:
    fam, ref = _SlowFamily(), tmp_path / "retrain-0"
    built, built_cached = sfd.reference_retrain(fam, tmp_path, [], ref, "cpu")
    again, again_cached = sfd.reference_retrain(fam, tmp_path, [], ref, "cpu")
    assert (built_cached, again_cached) == (False, True)
    assert built >= 0.05 and again == built and fam.calls == 1
    # a reference left without its measured time (an older run's) is built again, not timed at about 0 s
    (ref / "retrain_seconds.json").unlink()
    rebuilt, rebuilt_cached = sfd.reference_retrain(fam, tmp_path, [], ref, "cpu")
    assert not rebuilt_cached and rebuilt >= 0.05 and fam.calls == 2


def test_the_cached_mark_reaches_the_sfd_table() -> None:
    row = {"digit": 0, "override": 1, "method": "retrain", "forget_rate": 0.0, "override_rate": 0.0,
           "retained_acc": 1.0, "retained_fd": 0.3, "retained_fd_ratio": 1.0, "nfe": 10, "seconds": 65.0,
           "passed": True, "reasons": []}
    result = {"device": "cpu", "torch_threads": 1, "machine": "x", "total_seconds": 60, "sfd_steps": 800}
    assert "| 65 (cached) |" in sfd.markdown({**result, "rows": [{**row, "retrain_cached": True}]})
    assert "| 65 |" in sfd.markdown({**result, "rows": [row]})


def test_the_muse_page_says_how_the_retrain_was_timed() -> None:
    alone = muse.timing_text({})
    assert "timed alone" in alone and "favours the retrain" in alone
    side = muse.timing_text({"retrain_timing": {"jobs": 2, "threads": 1, "cpu_count": 2, "reference_alone_s": 100.0}})
    assert "one job among 2 at once" in side and "took 100 s" in side
    one = muse.timing_text({"retrain_timing": {"jobs": 1, "threads": 1, "cpu_count": 2, "reference_alone_s": 100.0}})
    assert "one job at a time" in one
