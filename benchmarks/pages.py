"""Result pages: a benchmark's generated table, then its author notes, kept as source in benchmarks/notes/.

A result page (`benchmarks/results/NAME.md`) is the script's table, written from `NAME.json`, followed by
`benchmarks/notes/NAME.md` when that file exists. The notes are written by hand after reading a run; each
notes file opens by naming the command whose output it reads, and any figure that no stored JSON holds is
marked there as not reproduced, with the command that would measure it. Keeping them apart from the JSON
lets `--markdown-only` rebuild a page byte for byte. A rerun writes its new table above the same notes, so
after a rerun the notes' figures must be read again against the new table (each notes file names its run).
"""

from __future__ import annotations

from pathlib import Path

NOTES = Path(__file__).resolve().parent / "notes"


def author_notes(name: str) -> str:
    """The hand-written notes for benchmark `name` (the text of notes/NAME.md), or "" where there are none."""
    path = NOTES / f"{name}.md"
    return path.read_text() if path.exists() else ""


def page(name: str, generated: str) -> str:
    """The result page: the generated Markdown, then a blank line and the author notes, if any."""
    notes = author_notes(name)
    return generated if not notes else generated.rstrip("\n") + "\n\n" + notes
