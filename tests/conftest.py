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


@pytest.fixture()
def settings(tmp_path, zoo_dir):
    """Embedded settings on a fresh SQLite database, sharing the cached zoo."""
    from unlearn.settings import Settings
    from unlearn.store.db import migrate

    s = Settings(data_dir=tmp_path / "data", batch_window_s=0.0, lease_s=30.0)
    migrate(s.resolved_database_url)
    return s


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path):
    """The URL of an empty database of each kind a deployment runs on (no schema yet)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    from tests.procs import postgres_database

    with postgres_database() as url:
        yield url


def cached_build(zoo_dir: Path, name: str, build, done: str) -> Path:
    """`zoo_dir / name`, built once by `build(folder)` into a temporary folder and moved into place whole,
    so that an interrupted build is never taken for a finished one; `done` is a path inside it that only a
    finished build has."""
    import shutil

    folder = zoo_dir / name
    if not (folder / done).exists():
        shutil.rmtree(folder, ignore_errors=True)
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        build(tmp)
        tmp.rename(folder)
    return folder


def register(settings, zoo_dir, name: str = "digits-mlp"):
    from unlearn import registry
    from unlearn.store.db import session_scope
    from unlearn.zoo import ZOO, ensure

    with session_scope(settings.resolved_database_url) as s:
        return registry.import_model(s, name=name, family=ZOO[name].family, source_dir=ensure(name, zoo_dir),
                                     artifact_root=settings.resolved_artifact_root, salt=settings.subject_salt)


def copy_version(session, parent, folder, tag: str):
    """Register a copy of `parent`'s weights in `folder` as a new candidate version. It forgets no sample,
    so no completed request taints it: a legal rollback target."""
    import shutil

    from unlearn import registry

    shutil.copytree(parent.artifact_path, folder, ignore=shutil.ignore_patterns(registry.MANIFEST))
    return registry.register_version(session, parent=parent, method="train", params={"copy": tag}, folder=folder,
                                     forget_ids=[], request_ids=[], job_id=f"job-{tag}", method_info={},
                                     verdict={"verdict": "pass"})


@pytest.fixture()
def digits_service(settings, zoo_dir):
    """`settings` with digits-mlp registered."""
    register(settings, zoo_dir)
    return settings


@pytest.fixture()
def api(digits_service):
    """An in-process API client on `digits_service`, with one key per role and tenant."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.auth import create_api_key
    from unlearn.store.db import session_scope

    with session_scope(digits_service.resolved_database_url) as s:
        keys = {"a": create_api_key(s, "tenant-a", "submitter"), "b": create_api_key(s, "tenant-b", "submitter"),
                "op": create_api_key(s, "ops", "operator")}
    client = TestClient(create_app(digits_service), raise_server_exceptions=False)
    client.keys = keys
    client.settings = digits_service
    return client


def post_request(client, body, key="a", idem=None):
    import uuid

    return client.post("/v1/deletion-requests", json=body,
                       headers={"X-API-Key": client.keys[key], "Idempotency-Key": idem or uuid.uuid4().hex})
