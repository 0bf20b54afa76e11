"""Shared start-up steps: schema, zoo models, registration."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from unlearn import registry
from unlearn.settings import Settings
from unlearn.store.db import migrate, session_scope
from unlearn.store.models import Model
from unlearn.zoo import ZOO, ensure


def prepare(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.resolved_database_url)


def build_zoo_model(settings: Settings, name: str) -> Path:
    with tqdm(total=100, desc=f"model {name}", unit="%", leave=False, disable=None) as bar:
        def progress(fraction: float, message: str) -> None:
            bar.n = int(100 * fraction)
            bar.set_postfix_str(message[:40])
            bar.refresh()
        return ensure(name, settings.zoo_dir, device=settings.device, progress=progress)


def register_zoo_models(settings: Settings, names: list[str]) -> list[str]:
    """Build (or reuse) each zoo model and register it once; returns the names newly registered."""
    new = []
    for name in names:
        folder = build_zoo_model(settings, name)
        with session_scope(settings.resolved_database_url) as s:
            if s.get(Model, name) is not None:
                continue
            registry.import_model(s, name=name, family=ZOO[name].family, source_dir=folder,
                                  artifact_root=settings.resolved_artifact_root, salt=settings.subject_salt,
                                  description=ZOO[name].description)
            new.append(name)
    return new
