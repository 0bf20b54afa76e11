"""Plugins of installed packages are loaded when a worker starts, and a broken one is named there."""

from __future__ import annotations

from unlearn import plugins


def test_every_plugin_is_imported_and_a_broken_one_is_named(monkeypatch):
    targets = {"unlearn.families": {"ok": "unlearn.families.base:Family", "gone": "no_such_package.mod:Family"},
               "unlearn.architectures": {"typo": "unlearn.models.mlp:no_such_attribute"}}
    monkeypatch.setattr(plugins, "entry_point_targets", lambda group: targets.get(group, {}))
    failed = plugins.load_entry_points()
    assert set(failed) == {"unlearn.families:gone", "unlearn.architectures:typo"}
    assert failed["unlearn.families:gone"].startswith("ModuleNotFoundError")
    assert "no_such_attribute" in failed["unlearn.architectures:typo"]
