"""Shared fixtures. Tiny models are trained once per session and cached on disk, so that
later runs (and the demo, which uses the same zoo) reuse them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# Two cores in CI: one torch thread per process keeps parallel workers from thrashing.
torch.set_num_threads(int(os.environ.get("UNLEARN_TORCH_THREADS", "1")))


@pytest.fixture(scope="session")
def zoo_dir() -> Path:
    """A persistent cache of zoo models shared by every test session (and `make demo`)."""
    path = Path(os.environ.get("UNLEARN_TEST_ZOO", ROOT / ".unlearn" / "zoo"))
    path.mkdir(parents=True, exist_ok=True)
    return path
