"""The demo's requests on the models it names, with each request's attempts: where a method's candidate
failed its gate and the job went on down the family's chain.

    python -m benchmarks.demo_fallback [--models digits-mlp]
    python -m benchmarks.demo_fallback --markdown-only   # rebuild demo_fallback.md from its JSON

Runs `unlearn demo` on a fresh data directory (the zoo cached under .unlearn/zoo, or $UNLEARN_TEST_ZOO) and
renders its report.
Writes benchmarks/results/demo_fallback.json (the demo's report) and demo_fallback.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# The zoo cache the tests share (UNLEARN_TEST_ZOO), else the checkout's own.
ZOO = Path(os.environ.get("UNLEARN_TEST_ZOO", Path(__file__).resolve().parents[1] / ".unlearn" / "zoo"))


def render(report: dict, models: str | None = None) -> str:
    """The Markdown result: how it was run, the demo's table, and every attempt of the requests that fell through."""
    rows, models = report["requests"], models or report["models"]
    fell = [r for r in rows if len(r["attempts"]) > 1]
    lines = [f"`unlearn demo --models {models}`: {len(rows)} requests, {report['seconds']:.0f} s for the whole run "
             f"({report['torch_threads']} torch thread(s), {report['machine']}); "
             f"{sum(r['status'] == 'completed' for r in rows)} completed, "
             f"{sum(r['status'] == 'needs_review' for r in rows)} wait for review, "
             f"{sum(r['status'] == 'rejected' for r in rows)} rejected.", "", "```", *report["table"], "```", ""]
    for r in fell:
        steps = "; ".join(f"{a['method']} {a['verdict']} in {a['wall_seconds']:.1f} s on {a['device']}"
                          for a in r["attempts"])
        lines.append(f"- request {r['id'][:8]} ({r['model']}, {r['status']}): {steps}.")
    return "\n".join(lines) + "\n"


def regenerate(results: Path = RESULTS) -> str:
    """The page (demo_fallback.md) as rebuilt from the stored demo_fallback.json under `results`: what
    --markdown-only writes."""
    return render(json.loads((results / "demo_fallback.json").read_text()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="digits-mlp", help="comma-separated demo models (default: digits-mlp)")
    ap.add_argument("--markdown-only", action="store_true", help="rewrite demo_fallback.md from its stored JSON")
    args = ap.parse_args()
    if args.markdown_only:
        (RESULTS / "demo_fallback.md").write_text(regenerate())
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        (data / "zoo").symlink_to(ZOO)  # the cached zoo, as the tests and `make demo` share it
        out = data / "report.json"
        threads = os.environ.get("UNLEARN_TORCH_THREADS", "1")
        code = subprocess.run([sys.executable, "-m", "cli.main", "demo", "--report", str(out), "--models", args.models],
                              env={**os.environ, "UNLEARN_DATA_DIR": str(data), "UNLEARN_TORCH_THREADS": threads}).returncode
        report = json.loads(out.read_text())
    report.update(exit_code=code, models=args.models, torch_threads=int(threads),
                  machine=f"{platform.machine()}, {os.cpu_count()} cores")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "demo_fallback.json").write_text(json.dumps(report, indent=2, default=str))
    (RESULTS / "demo_fallback.md").write_text(render(report, args.models))
    print(render(report, args.models))


if __name__ == "__main__":
    main()
