"""Artifacts in an S3-compatible object store shared by hosts with no shared file system.

A real S3 server process (moto's standalone server) stands in for MinIO or AWS. The multi-host test
runs the registering host and two Celery workers, each with its own private data directory, sharing
only PostgreSQL, Redis and the store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest
from sqlmodel import select

from tests.conftest import register
from tests.fault_methods import PLUGINS
from tests.procs import (
    ROOT,
    TEST_SALT,
    RedisServer,
    celery_worker,
    free_port,
    postgres_database,
    wait_for_port,
)
from unlearn import artifacts, registry
from unlearn.artifacts import locate, read_meta, record, use_mirror, write_manifest, write_meta
from unlearn.intake import DeletionRequestIn, submit
from unlearn.objectstore import ArtifactStore, StoreIntegrityError
from unlearn.settings import Settings
from unlearn.store.db import migrate, session_scope
from unlearn.store.models import DeletionRequest, ModelVersion, UnlearningJob
from unlearn.store.states import VersionStatus
from workers.celery_app import make_celery

CREDS = {"key": "test", "secret": "test", "client_kwargs": {"region_name": "us-east-1"}}


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """moto's S3 server in a process of its own; yields its endpoint URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    exe = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=open(log, "ab"),  # noqa: SIM115
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture()
def bucket(s3_server):
    name = f"b{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="test", aws_secret_access_key="test",
                 region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture(autouse=True)
def _no_mirror_left():
    yield
    use_mirror(None)  # this process's store must not leak into the next test


def _store(s3_server, bucket, root: Path, **kw) -> ArtifactStore:
    return ArtifactStore(f"s3://{bucket}/artifacts", root, storage_options={**CREDS, "endpoint_url": s3_server}, **kw)


def _folder(root: Path, rel: str, payload: bytes) -> Path:
    folder = root / rel
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(payload)
    (folder / "sub").mkdir()
    (folder / "sub" / "tokenizer.json").write_text('{"a": 1}')
    write_manifest(folder)
    return folder


def test_a_published_folder_is_fetched_on_another_host_byte_for_byte(tmp_path, s3_server, bucket):
    a, b = _store(s3_server, bucket, tmp_path / "a"), _store(s3_server, bucket, tmp_path / "b")
    src = _folder(tmp_path / "a", "m/v2", os.urandom(4096))
    assert not a.published(src)
    a.publish(src)
    assert a.published(src) and b.published(tmp_path / "b" / "m" / "v2")
    b.fetch(tmp_path / "b" / "m" / "v2")
    dst = tmp_path / "b" / "m" / "v2"
    assert registry.check_manifest(dst) == []
    assert (dst / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()
    assert not list((tmp_path / "b" / "m").glob("*.fetch-*"))  # no temporary folder left


def test_a_folder_without_its_manifest_in_the_store_does_not_exist_for_readers(tmp_path, s3_server, bucket):
    a, b = _store(s3_server, bucket, tmp_path / "a"), _store(s3_server, bucket, tmp_path / "b")
    src = _folder(tmp_path / "a", "m/v2", b"weights")
    # A publisher that died after the files and before the manifest: the files are there, the manifest not.
    a.fs.put_file(str(src / "model.safetensors"), f"{bucket}/artifacts/m/v2/model.safetensors")
    with pytest.raises(FileNotFoundError, match="neither on this host nor in the artifact store"):
        b.fetch(tmp_path / "b" / "m" / "v2")
    assert not (tmp_path / "b" / "m" / "v2").exists()


def test_a_file_changed_in_the_store_is_refused_and_nothing_is_kept(tmp_path, s3_server, bucket):
    a, b = _store(s3_server, bucket, tmp_path / "a"), _store(s3_server, bucket, tmp_path / "b")
    a.publish(_folder(tmp_path / "a", "m/v2", b"weights"))
    a.fs.pipe_file(f"{bucket}/artifacts/m/v2/model.safetensors", b"poisoned")
    with pytest.raises(StoreIntegrityError, match="does not match its manifest"):
        b.fetch(tmp_path / "b" / "m" / "v2")
    assert not (tmp_path / "b" / "m").exists() or not any((tmp_path / "b" / "m").iterdir())


def test_the_local_cache_keeps_within_its_size_limit_least_recently_used_first(tmp_path, s3_server, bucket):
    a = _store(s3_server, bucket, tmp_path / "a")
    for i in range(3):
        a.publish(_folder(tmp_path / "a", f"m/v{i}", os.urandom(10_000)))
    b = _store(s3_server, bucket, tmp_path / "b", cache_bytes=25_000)
    for i in range(3):
        b.fetch(tmp_path / "b" / "m" / f"v{i}")
        time.sleep(0.01)
    assert b.cached_bytes() <= 25_000
    assert not (tmp_path / "b" / "m" / "v0").exists()  # the oldest went first
    assert (tmp_path / "b" / "m" / "v2").exists()
    b.fetch(tmp_path / "b" / "m" / "v0")  # fetched again on demand
    assert registry.check_manifest(tmp_path / "b" / "m" / "v0") == []


def test_paths_are_recorded_relative_to_the_root_and_read_back_under_each_hosts_own(tmp_path, s3_server, bucket):
    a, b = _store(s3_server, bucket, tmp_path / "a"), _store(s3_server, bucket, tmp_path / "b")
    use_mirror(a)
    records = _folder(tmp_path / "a", "m/records", b"rows")
    a.publish(records)
    v1 = tmp_path / "a" / "m" / "v1"
    write_meta(v1, {"dataset": {"name": "records", "path": str(records)}, "source": "/elsewhere/model"})
    write_manifest(v1)
    a.publish(v1)
    assert record(v1) == "m/v1"
    raw = json.loads((v1 / artifacts.META).read_text())
    assert raw["dataset"]["path"] == "@artifacts/m/records" and raw["source"] == "/elsewhere/model"

    use_mirror(b)  # the other host: reads the same row and the same unlearn.json
    folder = locate("m/v1")
    assert folder == tmp_path / "b" / "m" / "v1"
    meta = read_meta(folder)
    assert meta["dataset"]["path"] == str(tmp_path / "b" / "m" / "records")
    assert (tmp_path / "b" / "m" / "records" / "model.safetensors").read_bytes() == b"rows"


def test_a_manifest_replaced_in_the_store_quarantines_the_version(tmp_path, s3_server, bucket, zoo_dir):
    settings = Settings(data_dir=tmp_path / "a", artifact_url=f"s3://{bucket}/artifacts",
                        artifact_storage_options={**CREDS, "endpoint_url": s3_server})
    settings.install_artifact_store()
    migrate(settings.resolved_database_url)
    v1 = register(settings, zoo_dir)
    assert v1.artifact_path == "digits-mlp/v1"
    # Someone rewrites the weights in the store and a manifest that matches them.
    other = tmp_path / "forged"
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"forged")
    (other / artifacts.META).write_bytes((settings.resolved_artifact_root / "digits-mlp/v1" / artifacts.META).read_bytes())
    write_manifest(other)
    store = artifacts._MIRROR
    for f in ("model.safetensors", artifacts.META, artifacts.MANIFEST):
        store.fs.put_file(str(other / f), f"{bucket}/artifacts/digits-mlp/v1/{f}")
    for stale in (store.fs.find(f"{bucket}/artifacts/digits-mlp/v1")):
        if Path(stale).name not in ("model.safetensors", artifacts.META, artifacts.MANIFEST):
            store.fs.rm(stale)
    fresh = Settings(data_dir=tmp_path / "b", database_url=settings.resolved_database_url,
                     artifact_url=settings.artifact_url, artifact_storage_options=settings.artifact_storage_options)
    fresh.install_artifact_store()  # a host that never had the version
    with session_scope(settings.resolved_database_url) as s:
        version = s.get(ModelVersion, v1.id)
        with pytest.raises(registry.ArtifactIntegrityError, match="not the one it was registered with"):
            registry.ensure_intact(s, version, actor="test")
    with session_scope(settings.resolved_database_url) as s:
        assert s.get(ModelVersion, v1.id).status == VersionStatus.QUARANTINED


# ---------------------------------------------------------------- several hosts

@pytest.mark.integration
@pytest.mark.slow
def test_workers_on_hosts_without_a_shared_disk_serve_each_others_versions(tmp_path, zoo_dir, s3_server, bucket):
    redis_server = RedisServer(tmp_path / "redis").start()
    try:
        with postgres_database() as db:
            _multi_host(tmp_path, zoo_dir, s3_server, bucket, redis_server, db)
    finally:
        redis_server.stop(signal.SIGKILL)


def _multi_host(tmp_path, zoo_dir, s3_server, bucket, redis_server, db):
    opts = {**CREDS, "endpoint_url": s3_server}
    shared = {"lease_s": 4.0, "visibility_timeout_s": 60, "task_time_limit_s": 120, "task_soft_time_limit_s": 110,
              "batch_window_s": 0.2, "reconcile_interval_s": 1.0, "requeue_after_s": 2.0, "max_attempts": 3,
              "subject_salt": TEST_SALT}
    env = {"UNLEARN_BROKER_URL": redis_server.url, "UNLEARN_DATABASE_URL": db,
           "UNLEARN_ARTIFACT_URL": f"s3://{bucket}/artifacts", "UNLEARN_ARTIFACT_STORAGE_OPTIONS": json.dumps(opts),
           "UNLEARN_EXTRA_METHODS": json.dumps(PLUGINS), **{f"UNLEARN_{k.upper()}": str(v) for k, v in shared.items()}}
    # The registering host (the API's): registers the zoo model, which goes to the store.
    api = Settings(data_dir=tmp_path / "host-api", database_url=db, broker_url=redis_server.url,
                   artifact_url=f"s3://{bucket}/artifacts", artifact_storage_options=opts, extra_methods=PLUGINS,
                   **shared)
    api.install_artifact_store()
    migrate(db)
    register(api, zoo_dir)
    celery = make_celery(api)
    logs = tmp_path / "logs"
    logs.mkdir()

    def host(name: str):
        data = tmp_path / f"host-{name}"
        return celery_worker({**env, "UNLEARN_DATA_DIR": str(data)}, name=f"{name}-{uuid.uuid4().hex[:4]}@localhost",
                             log=logs / f"{name}.log")

    def request(subject: str, **kw) -> str:
        with session_scope(db) as s:
            body = DeletionRequestIn(model="digits-mlp", scope={"type": "subject", "subject": subject}, **kw)
            rid = submit(s, api, "t", body)[0].id
        celery.send_task("ops.coalesce", kwargs={"force": True})
        return rid

    def wait(predicate, what: str, timeout: float = 240):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.25)
        tails = "\n".join(p.read_text()[-3000:] for p in logs.glob("*.log"))
        raise AssertionError(f"timed out waiting for {what}\n{tails}")

    def status(rid: str) -> str:
        with session_scope(db) as s:
            return s.get(DeletionRequest, rid).status

    def jobs() -> list[UnlearningJob]:
        with session_scope(db) as s:
            return list(s.exec(select(UnlearningJob).order_by(UnlearningJob.created_at)).all())

    # 1. A job killed on host A mid-run is finished by host B from what is in the store.
    first = request("subject-0001", method="slow", params={"sleep_s": 6})
    with host("a") as proc_a:
        wait(lambda: bool(jobs()) and jobs()[0].stage == "unlearning" and jobs()[0].progress > 0.05, "A to start")
        os.killpg(proc_a.pid, signal.SIGKILL)
        proc_a.wait()
    assert (tmp_path / "host-a" / "artifacts" / "digits-mlp" / "v1").is_dir()  # A had fetched its base
    beat = subprocess.Popen([sys.executable, "-m", "celery", "-A", "workers.celery_app", "beat", "-s",
                             str(tmp_path / "beat-schedule")], cwd=ROOT,
                            env={**os.environ, **env, "UNLEARN_DATA_DIR": str(tmp_path / "host-beat"),
                                 "PYTHONPATH": str(ROOT)},
                            stdout=open(logs / "beat.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
                            start_new_session=True)
    try:
        with host("b"):
            wait(lambda: status(first) in ("completed", "rejected", "failed"), "the first request")
            assert status(first) == "completed"
            (job,) = jobs()
            assert job.worker.startswith("b-") and job.attempts == 2
            with session_scope(db) as s:
                v2 = s.get(ModelVersion, job.result_version_id)
                assert v2.artifact_path == f"digits-mlp/jobs/{job.id}/attempt-2"  # relative: any host reads it
            # B had no copy of anything: it fetched v1 from the store and wrote v2 there.
            assert (tmp_path / "host-b" / "artifacts" / "digits-mlp" / "v1" / "model.safetensors").exists()
            assert _store(s3_server, bucket, tmp_path / "probe").published(tmp_path / "probe" / v2.artifact_path)

        # 2. A version written on B is served by A: A's next job starts from v2, which only B had.
        assert not (tmp_path / "host-a" / "artifacts" / v2.artifact_path).exists()
        second = request("subject-0002")
        with host("a"):
            wait(lambda: status(second) in ("completed", "rejected", "failed"), "the second request")
        assert status(second) == "completed"
        with session_scope(db) as s:
            job2 = s.get(UnlearningJob, jobs()[1].id)
            assert job2.base_version_id == v2.id and job2.worker.startswith("a-")
        fetched = tmp_path / "host-a" / "artifacts" / v2.artifact_path
        assert registry.check_manifest(fetched) == []
        assert registry.build_manifest(fetched)["sha256"] == v2.stored_sha256  # what is kept: whole, or a delta
        whole = fetched / ".composed" if (fetched / "delta.json").exists() else fetched
        assert registry.build_manifest(whole)["sha256"] == v2.weights_sha256
    finally:
        os.killpg(beat.pid, signal.SIGKILL)
        beat.wait()


def test_a_team_registration_is_read_on_a_host_that_never_saw_its_folders(tmp_path, s3_server, bucket):
    from tests.test_registration import _reg, _team  # the memo family and a team's folder
    from unlearn import registration
    from unlearn.data import records as rec

    opts = {**CREDS, "endpoint_url": s3_server}
    api = Settings(data_dir=tmp_path / "api", artifact_url=f"s3://{bucket}/artifacts", artifact_storage_options=opts)
    api.install_artifact_store()
    migrate(api.resolved_database_url)
    paths = _team(tmp_path, n=30)
    with session_scope(api.resolved_database_url) as s:
        done = registration.register(s, _reg(paths, reference="precomputed", reference_dir=paths["model"]),
                                     artifact_root=api.resolved_artifact_root, salt=api.subject_salt)
    with session_scope(api.resolved_database_url) as s:
        v1 = s.get(ModelVersion, done.version_id)
        assert v1.artifact_path == "support-memo/v1"
    on_disk = json.loads((api.resolved_artifact_root / "support-memo/v1" / artifacts.META).read_text())
    assert on_disk["dataset"]["path"] == "@artifacts/support-memo/records"
    assert on_disk["reference"]["dir"] == "@artifacts/support-memo/assets/reference"

    worker = Settings(data_dir=tmp_path / "worker", database_url=api.resolved_database_url,
                      artifact_url=api.artifact_url, artifact_storage_options=opts)
    worker.install_artifact_store()  # another host: nothing of the model on its disk
    with session_scope(worker.resolved_database_url) as s:
        version = s.get(ModelVersion, done.version_id)
        registry.ensure_intact(s, version, actor="worker")  # fetched, every hash checked
    meta = read_meta(worker.resolved_artifact_root / "support-memo/v1")
    assert meta["dataset"]["path"] == str(worker.resolved_artifact_root / "support-memo/records")
    assert len(rec.load(meta["dataset"]["path"]).records()) == 40  # the records came along
    assert registry.check_manifest(Path(meta["reference"]["dir"])) == []
