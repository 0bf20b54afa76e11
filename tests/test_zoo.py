"""The zoo cache: built once, reused, and rebuilt when its recipe's version changes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from unlearn import zoo
from unlearn.artifacts import read_meta, write_meta

BUILDS: list[Path] = []


def build_counter(out_dir: Path, *, device: str = "cpu", progress=None) -> None:
    BUILDS.append(out_dir)
    write_meta(out_dir, {"family": "classifier", "model": "counter", "build": len(BUILDS)})


def test_a_cached_model_is_reused_until_its_recipe_version_changes(tmp_path, monkeypatch) -> None:
    BUILDS.clear()
    module = sys.modules[__name__].__name__
    monkeypatch.setitem(zoo.ZOO, "counter", zoo.ZooEntry("classifier", f"{module}:build_counter", "test"))
    first = zoo.ensure("counter", tmp_path)
    assert read_meta(first) == {"family": "classifier", "model": "counter", "build": 1, "zoo_version": 1}
    assert zoo.ensure("counter", tmp_path) == first and len(BUILDS) == 1  # cached

    monkeypatch.setitem(zoo.ZOO, "counter", zoo.ZooEntry("classifier", f"{module}:build_counter", "test", version=2))
    again = zoo.ensure("counter", tmp_path)
    assert again == first and len(BUILDS) == 2
    assert read_meta(again)["build"] == 2 and read_meta(again)["zoo_version"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter"]  # nothing stale or half-built left


def test_an_unknown_zoo_name_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(KeyError, match="unknown zoo model 'nope'"):
        zoo.ensure("nope", tmp_path)
