"""Copy each benchmark's Markdown result into README.md, between `<!-- bench:NAME -->` markers.

    python -m benchmarks.update_readme
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def render(text: str, results: Path = RESULTS) -> str:
    """`text` (the README) with every `<!-- bench:NAME -->` block replaced by results/NAME.md, headings demoted
    to level 3 and plot links made relative to the repository root; a missing result names its command."""
    for name in re.findall(r"<!-- bench:([\w-]+) -->", text):
        result = results / f"{name}.md"
        body = result.read_text().strip() if result.exists() else f"_(run `python -m benchmarks.{name}`)_"
        # Result files link their plots relative to results/; from the README they live one folder down.
        body = re.sub(r"\]\((?!http)([\w.-]+\.png)\)", r"](benchmarks/results/\1)", body)
        body = re.sub(r"^(#{1,2}) ", r"### ", body, flags=re.M)
        text = re.sub(rf"<!-- bench:{name} -->.*?<!-- /bench:{name} -->",
                      lambda _m, n=name, b=body: f"<!-- bench:{n} -->\n{b}\n<!-- /bench:{n} -->", text, flags=re.S)
    return text


def main() -> None:
    readme = ROOT / "README.md"
    readme.write_text(render(readme.read_text()))


if __name__ == "__main__":
    main()
