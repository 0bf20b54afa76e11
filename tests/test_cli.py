"""The `unlearn` command as a user runs it: real processes, one-line errors."""

import json
import os
import subprocess
import sys

import httpx
import pytest

from tests.procs import ROOT, free_port, wait_for_port

pytestmark = pytest.mark.slow


def _unlearn(env, *args, check=True):
    proc = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture()
def env(tmp_path, zoo_dir):
    # The served data dir gets the cached zoo through a link, so nothing is trained twice.
    data = tmp_path / "data"
    data.mkdir()
    (data / "zoo").symlink_to(zoo_dir)
    return {**os.environ, "UNLEARN_DATA_DIR": str(data), "UNLEARN_BATCH_WINDOW_S": "0.2", "PYTHONPATH": str(ROOT)}


def test_bad_input_is_one_clear_line(env):
    proc = _unlearn(env, "api-key", "create", "--tenant", "", "--role", "submitter", check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "tenant" in proc.stderr
    proc = _unlearn(env, "model", "import-zoo", "no-such-model", check=False)
    assert proc.returncode != 0 and "unknown zoo model" in proc.stderr and "Traceback" not in proc.stderr


def test_serve_and_the_request_client(env, tmp_path):
    _unlearn(env, "model", "import-zoo", "digits-mlp")
    key = _unlearn(env, "api-key", "create", "--tenant", "acme", "--role", "submitter").stdout.strip()
    assert key.startswith("ul_")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "serve.log", "w"))  # noqa: SIM115
    try:
        wait_for_port(port, timeout=60)
        client = {**env, "UNLEARN_URL": f"http://127.0.0.1:{port}", "UNLEARN_API_KEY": key}
        out = _unlearn(client, "request", "submit", "--model", "digits-mlp", "--subject", "subject-0004",
                       "--external-id", "CASE-0042", "--due-days", "10")
        submitted = json.loads(out.stdout)
        rid = submitted["id"]
        assert submitted["scope"]["type"] == "subject" and submitted["external_id"] == "CASE-0042"
        assert round(submitted["days_left"]) == 10
        waited = _unlearn(client, "request", "wait", rid, "--timeout", "180", "--interval", "0.5", check=False)
        assert waited.returncode == 0, (tmp_path / "serve.log").read_text()[-2000:]
        assert json.loads(waited.stdout)["status"] == "completed"
        listed = json.loads(_unlearn(client, "request", "list", "--status", "completed").stdout)
        assert [(r["id"], r["external_id"]) for r in listed["items"]] == [(rid, "CASE-0042")]
        cert = _unlearn(client, "request", "certificate", rid).stdout
        (tmp_path / "cert.json").write_text(cert)
        checked = _unlearn(client, "verify-certificate", str(tmp_path / "cert.json"), "--url", client["UNLEARN_URL"])
        assert checked.stdout.startswith(f"certificate valid: request {rid} (digits-mlp)")
        # a decision is for a request in needs_review only: a completed one answers 409, and a submitter's key 403
        decided = _unlearn(client, "request", "decide", rid, "reject", "--reason", "x", check=False)
        assert decided.returncode == 1 and decided.stderr.startswith("unlearn: 403")
        gone = _unlearn(client, "request", "wait", "no-such-id", check=False)
        assert gone.returncode == 1 and gone.stderr.startswith("unlearn: 404")
        bad = _unlearn(client, "request", "submit", "--model", "nope", "--type", "class", "--label", "1", check=False)
        assert bad.returncode == 1 and bad.stderr.strip() == "unlearn: 404 Unknown model: unknown model 'nope'"
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "ok"
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_version_and_help_on_every_option(env):
    from cli.main import build_parser

    version = _unlearn(env, "--version").stdout.strip()
    assert version.startswith("unlearn ") and version != "unlearn unknown"
    helpless = []

    def walk(parser, path):
        for action in parser._actions:
            if action.help is None and not hasattr(action, "_name_parser_map"):
                helpless.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
            for name, sub in getattr(action, "choices", None).items() if hasattr(action, "_name_parser_map") else ():
                walk(sub, f"{path} {name}")

    walk(build_parser(), "unlearn")
    assert helpless == []
    from unlearn.zoo import ZOO

    listed = _unlearn(env, "model", "import-zoo", "--help").stdout
    assert all(name in listed for name in ZOO)


def test_cli_rollback_refuses_a_tainted_version(env, zoo_dir):
    from tests.conftest import register
    from unlearn.settings import Settings
    from unlearn.store.db import migrate, session_scope
    from unlearn.store.models import DeletionRequest, RequestTarget, utcnow

    settings = Settings(data_dir=env["UNLEARN_DATA_DIR"])
    migrate(settings.resolved_database_url)
    v1 = register(settings, zoo_dir)
    with session_scope(settings.resolved_database_url) as s:  # a completed deletion v1 still holds
        req = DeletionRequest(tenant="t", scope_type="samples", due_at=utcnow(), status="completed")
        s.add(req)
        s.flush()
        s.add(RequestTarget(request_id=req.id, model_name="digits-mlp", forget_ids=["digits-0000"], status="done"))
    proc = _unlearn(env, "model", "rollback", "digits-mlp", v1.id, check=False)
    assert proc.returncode == 1 and "tainted" in proc.stderr and proc.stderr.count("\n") == 1


def test_cli_sets_and_clears_a_models_cost_budget(env, zoo_dir):
    from tests.conftest import register
    from unlearn.settings import Settings
    from unlearn.store.db import migrate, session_scope
    from unlearn.store.models import Model

    settings = Settings(data_dir=env["UNLEARN_DATA_DIR"])
    migrate(settings.resolved_database_url)
    register(settings, zoo_dir)
    assert "may spend 90 s" in _unlearn(env, "model", "budget", "digits-mlp", "90").stdout
    with session_scope(settings.resolved_database_url) as s:
        assert s.get(Model, "digits-mlp").cost_budget_s == 90.0
    assert "the settings' 7200 s" in _unlearn(env, "model", "budget", "digits-mlp").stdout
    with session_scope(settings.resolved_database_url) as s:
        assert s.get(Model, "digits-mlp").cost_budget_s is None
    missing = _unlearn(env, "model", "budget", "nope", "5", check=False)
    assert missing.returncode == 1 and "no model 'nope'" in missing.stderr
