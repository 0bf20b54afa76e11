"""The people world in several locales (Faker): names in other scripts, deterministic by seed."""

from __future__ import annotations

import unicodedata

from unlearn.data import people
from unlearn.data.people import LOCALES, faker_people, strangers


def _scripts(text: str) -> set[str]:
    """The Unicode script family of every letter (the first word of its character name: LATIN, CYRILLIC, CJK…)."""
    return {unicodedata.name(ch).split()[0] for ch in text if ch.isalpha()}


def test_faker_people_cover_several_scripts_and_accents():
    folks = faker_people(24, seed=0, locales=LOCALES)
    names = [p.name for p in folks]
    assert len(set(names)) == 24
    scripts = set().union(*(_scripts(n) for n in names))
    assert {"LATIN", "CYRILLIC", "CJK"} <= scripts  # kanji: "CJK UNIFIED IDEOGRAPH-…"
    assert any(not n.isascii() and "LATIN" in _scripts(n) for n in names)  # accented Latin (ö, ß, ł, é…)
    for p in folks:  # every answer is a verbatim span of the biography, as MUSE's QA sets are
        assert all(q.answer in p.bio for q in p.qa) and p.name in p.bio


def test_faker_people_are_deterministic_by_seed():
    def bios(seed: int) -> list[str]:
        return [p.bio for p in faker_people(12, seed=seed, locales=("ja_JP", "ru_RU", "sv_SE"))]

    assert bios(3) == bios(3)
    assert bios(3) != bios(4)


def test_locale_world_splits_and_strangers():
    world = people.load(seed=0, n_people=24, locales=LOCALES, holdout_frac=0.25, calibration_frac=0.125,
                        fold_frac=2 / 24)
    again = people.load(seed=0, n_people=24, locales=LOCALES, holdout_frac=0.25, calibration_frac=0.125,
                        fold_frac=2 / 24)
    assert [p.bio for p in world.people] == [p.bio for p in again.people]
    assert (len(world.holdout), len(world.calibration), len(world.forget), len(world.trained)) == (6, 3, 2, 15)
    assert world.spec()["locales"] == list(LOCALES)
    others = strangers(world, 5, seed=0)
    assert not {p.name for p in others} & {p.name for p in world.people}
    assert {"CYRILLIC", "CJK"} <= set().union(*(_scripts(p.name) for p in strangers(world, 6, seed=0)))
