"""Author notes: the prose under a benchmark's generated table, kept as a source file beside the scripts.

A result page (`benchmarks/results/NAME.md`) is the script's table, written from `NAME.json`, followed by
`benchmarks/notes/NAME.md` when that file exists. The notes are written by hand after reading a run; each
notes file opens by naming the command whose output it reads, and any figure that no stored JSON holds is
marked there as not reproduced, with the command that would measure it. Keeping them apart from the JSON
lets `--markdown-only` rebuild a page byte for byte, and lets a rerun replace the table without silently
keeping prose about numbers that have changed (the notes file's figures must then be read again).
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
