"""Start-up and shutdown of the service's processes, run for real: the subject salt, an idle SIGTERM, a quiet start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.procs import ROOT, free_port, wait_for_port
from unlearn.settings import Settings, SettingsError

GRACE_S = Settings.model_fields["shutdown_grace_s"].default


def _env(tmp_path, **over: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNLEARN_")}
    return {**env, "UNLEARN_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT), **over}


def test_an_idle_unlearn_serve_stops_within_its_grace_on_the_first_sigterm_and_starts_quietly(tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(port)], cwd=ROOT,
                                  env=_env(tmp_path), stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, timeout=60)
            time.sleep(1.0)  # idle: nothing queued, nothing running
            sent = time.monotonic()
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=GRACE_S)
            took = time.monotonic() - sent
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    text = log.read_text()
    assert server.returncode == 0 and took < GRACE_S, text
    # The default salt is named loudly; the in-memory broker's connections warn of nothing.
    assert "UNLEARN_SUBJECT_SALT is not set" in text
    assert "No hostname was supplied" not in text, text


@pytest.mark.parametrize("command", [["serve", "--port", "{port}"], ["worker"], ["beat"]])
def test_production_processes_refuse_the_default_subject_salt(tmp_path, command):
    argv = [a.format(port=free_port()) for a in command]
    env = _env(tmp_path, UNLEARN_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    proc = subprocess.run([sys.executable, "-m", "cli.main", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "UNLEARN_SUBJECT_SALT is not set" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "data" / "unlearn.db").exists()  # nothing was started


def test_the_production_asgi_factory_refuses_the_default_subject_salt(tmp_path, monkeypatch):
    from cli.asgi import build

    for k, v in _env(tmp_path, UNLEARN_BROKER_URL="redis://127.0.0.1:1/0").items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("UNLEARN_SUBJECT_SALT", raising=False)
    with pytest.raises(SettingsError, match="UNLEARN_SUBJECT_SALT is not set"):
        build()


def test_a_secret_salt_passes_and_the_default_in_embedded_mode_only_warns(caplog, monkeypatch):
    monkeypatch.delenv("UNLEARN_SUBJECT_SALT", raising=False)
    Settings(broker_url="redis://127.0.0.1:1/0", subject_salt="a-secret").check_subject_salt()
    Settings(subject_salt="a-secret").check_subject_salt()
    assert "UNLEARN_SUBJECT_SALT" not in caplog.text
    Settings(broker_url="memory://").check_subject_salt()
    assert "UNLEARN_SUBJECT_SALT is not set" in caplog.text
