"""The README's "Bring your own model" walkthrough, run as written (examples/byo/walkthrough.sh) from a
clean data directory: on SQLite with `unlearn serve` alone, and on PostgreSQL with Redis and a separate
`unlearn worker`. One customer's request reaches the three registered models, completes on each with a
passing verdict, and its certificate verifies."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cached_build
from tests.procs import free_port

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "byo" / "walkthrough.sh"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stand_ins(zoo_dir):
    """The three stand-ins, built once (small diffusion recipe) and cached beside the zoo."""
    def build(tmp: Path) -> None:
        subprocess.run([sys.executable, "examples/byo/make_models.py", str(tmp), "--small"], cwd=ROOT, check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=1800)

    folder = cached_build(zoo_dir, "byo-walkthrough", build, "built.json")
    built = (folder / "built.json").read_text()  # paths inside were written under the temporary folder
    (folder / "built.json").write_text(built.replace(str(folder.with_name(folder.name + ".tmp")), str(folder)))
    return folder


def _run(stand_ins: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    bin_dir = str(Path(sys.executable).parent)
    full = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "PYTHONPATH": str(ROOT),
            "MODELS": str(stand_ins), "PORT": str(free_port()), "UNLEARN_DATA_DIR": str(tmp_path / "data"),
            "UNLEARN_TORCH_THREADS": "1", **env}
    return subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=full, capture_output=True, text=True,
                          timeout=1800)


def _check(proc: subprocess.CompletedProcess, tmp_path: Path) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for name in ("support-lm", "digits-vit", "digits-pipeline"):
        assert re.search(rf"{name}: registered \(version 1 ", out), out
        assert re.search(rf"  {name} +done +verdict pass by [\w-]+, (holdout|retrain) policy", out), out
    request = json.loads((tmp_path / "request.json").read_text())
    assert request["status"] == "completed"
    assert sorted(t["model"] for t in request["targets"]) == ["digits-pipeline", "digits-vit", "support-lm"]
    assert "certificate valid: request " + request["id"] in out
    cert = json.loads((tmp_path / "cert.json").read_text())["certificate"]
    assert sorted(m["model"] for m in cert["models"]) == ["digits-pipeline", "digits-vit", "support-lm"]
    policies = {v["reference_policy"] for v in request["verdicts"].values()}
    assert policies == {"holdout", "retrain"}


def test_walkthrough_on_sqlite_with_unlearn_serve_alone(stand_ins, tmp_path):
    _check(_run(stand_ins, tmp_path), tmp_path)


def test_walkthrough_on_postgresql_with_a_celery_worker(stand_ins, tmp_path):
    from tests.procs import RedisServer, postgres_database

    redis = RedisServer(tmp_path / "redis").start()
    try:
        with postgres_database() as url:
            proc = _run(stand_ins, tmp_path, UNLEARN_DATABASE_URL=url, UNLEARN_BROKER_URL=redis.url,
                        UNLEARN_SUBJECT_SALT="walkthrough-salt-" + os.urandom(4).hex())
    finally:
        redis.stop()
    _check(proc, tmp_path)


def test_the_readme_shows_the_walkthrough_as_it_runs():
    readme = (ROOT / "README.md").read_text()
    commands = [line for line in SCRIPT.read_text().splitlines() if line.startswith("unlearn model register")]
    assert len(commands) == 3 and all(c in readme for c in commands)
