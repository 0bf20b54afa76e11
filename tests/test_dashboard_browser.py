"""The operator dashboard in headless Chromium (Debian's package, driven by Playwright; nothing is
downloaded at test time). Screenshots of each step are saved to tests/artifacts/."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.procs import app_server

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
# Without the background-networking flags Chromium keeps calling out of a closed network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# In CI (.ci/run sets CI=1, and installs Chromium) a missing browser fails the run; elsewhere it skips.
if os.environ.get("CI") and not CHROMIUM.exists():
    raise RuntimeError("CI: Debian's chromium is not installed at /usr/bin/chromium; the browser tests need it")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at "
                                "/usr/bin/chromium (.ci/run installs it)")
if os.environ.get("CI"):
    import playwright.sync_api as sync_api  # a dev extra, installed by `make`: missing, it fails the run
else:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (a dev extra) is not installed")


@pytest.fixture()
def server(digits_service):
    """The API (and dashboard) over `digits_service` on a loopback port, with one key per role."""
    from api.app import create_app
    from api.auth import create_api_key
    from unlearn.store.db import session_scope

    with session_scope(digits_service.resolved_database_url) as s:
        keys = {"op": create_api_key(s, "ops", "operator"), "sub": create_api_key(s, "tenant-a", "submitter")}
    with app_server(create_app(digits_service)) as url:
        yield url, keys, digits_service


@pytest.fixture()
def page(tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(20_000)
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.js_errors = errors
        yield pg
        context.close()
        browser.close()


# Controls a screen reader could not name: buttons and links without text, fields without a label.
UNLABELLED = """() => [...document.querySelectorAll('button, a[href], input, select, textarea, img')]
  .filter(el => el.offsetParent !== null)
  .filter(el => el.tagName === 'IMG' ? !el.alt
    : ['INPUT', 'SELECT', 'TEXTAREA'].includes(el.tagName) ? !(el.labels && el.labels.length) && !el.ariaLabel
    : !(el.textContent.trim() || el.ariaLabel))
  .map(el => el.outerHTML.slice(0, 80))"""


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


def login(page, base: str, key: str) -> None:
    page.goto(f"{base}/dashboard")
    page.get_by_label("Operator API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def _complete_one_request(settings, base: str, key: str, page) -> str:
    from unlearn.coalesce import coalesce
    from unlearn.jobs import run_job
    from unlearn.store.db import session_scope

    resp = httpx.post(f"{base}/v1/deletion-requests", headers={"X-API-Key": key, "Idempotency-Key": uuid.uuid4().hex},
                      json={"model": "digits-mlp", "scope": {"type": "subject", "subject": "subject-0001"}})
    assert resp.status_code == 202, resp.text
    rid = resp.json()["id"]
    row = page.locator(f"tr[data-request='{rid}']")
    sync_api.expect(row).to_contain_text("received")
    shot(page, "02-received")
    with session_scope(settings.resolved_database_url) as s:
        (job_id,) = coalesce(s, settings, force=True)
    assert run_job(settings, job_id, "browser-test-worker").status == "done"
    sync_api.expect(row).to_contain_text("completed")  # the page polls: no reload
    return rid


def _record_a_plot(settings, version_id: str) -> None:
    """Give the new version a plot the way a verifier records one (a PNG under the artifact root)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sqlalchemy.orm.attributes import flag_modified

    from unlearn.store.db import session_scope
    from unlearn.store.models import ModelVersion

    path = settings.resolved_artifact_root / "digits-mlp" / "reports" / "c5.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 2, 3, 4], [0.95, 0.94, 0.94, 0.93], marker="o")
    ax.set(xlabel="forget-set size", ylabel="test accuracy", title="C5 scalability")
    fig.savefig(path, dpi=72)
    plt.close(fig)
    with session_scope(settings.resolved_database_url) as s:
        v = s.get(ModelVersion, version_id)
        v.metrics = {**v.metrics, "plots": {"C5_scalability": str(path)}}
        flag_modified(v, "metrics")
        s.add(v)


def _untainted_sibling(settings, champion_id: str) -> int:
    """A second verified candidate that excludes the same samples (as a rerun with another method
    would make): an untainted version an operator may roll back to."""
    from unlearn import registry
    from unlearn.store.db import session_scope
    from unlearn.store.models import ModelVersion

    with session_scope(settings.resolved_database_url) as s:
        champ = s.get(ModelVersion, champion_id)
        parent = s.get(ModelVersion, champ.parent_id)
        folder = Path(champ.artifact_path).with_name("sibling")
        shutil.copytree(champ.artifact_path, folder)
        v = registry.register_version(s, parent=parent, method="retrain", params={"variant": "sibling"},
                                      folder=folder, forget_ids=sorted(set(champ.excluded_ids)), request_ids=[],
                                      job_id="manual", method_info={}, verdict=champ.metrics)
        return v.version


def test_operator_follows_a_request_to_completion_and_rolls_back(server, page):
    base, keys, settings = server
    expect = sync_api.expect

    page.goto(f"{base}/dashboard")
    expect(page.get_by_role("heading", name="Operator sign-in")).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_be_hidden()
    shot(page, "01-login")
    login(page, base, keys["op"])
    expect(page.get_by_role("navigation", name="Sections")).to_be_visible()
    expect(page.get_by_role("heading", name="Requests", exact=True)).to_be_visible()

    rid = _complete_one_request(settings, base, keys["sub"], page)
    shot(page, "03-completed")

    # The audit trail opens from the request's row.
    page.get_by_role("button", name=f"Open request {rid}").click()
    audit = page.locator("#audit-table")
    expect(audit).to_contain_text("verifying → completed")
    expect(audit).to_contain_text("issued")  # the certificate
    expect(page.get_by_role("link", name="Deletion certificate (JSON)")).to_be_visible()
    shot(page, "04-audit-trail")

    # The verifier report: metrics against thresholds, and the plots recorded with it.
    versions = httpx.get(f"{base}/v1/models/digits-mlp/versions", headers={"X-API-Key": keys["op"]}).json()
    v1, v2 = versions
    _record_a_plot(settings, v2["id"])
    page.get_by_role("button", name="Verifier report (digits-mlp)").click()
    report = page.locator("#report-panel")
    expect(report.get_by_role("heading", name="Verifier report: digits-mlp v2")).to_be_visible()
    criteria = report.locator("#criteria-table")
    expect(criteria).to_contain_text("forget_acc")
    expect(criteria).to_contain_text("pass")
    plot = report.get_by_role("img", name="C5_scalability plot for digits-mlp v2")
    expect(plot).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=plot.element_handle())
    shot(page, "05-verifier-report")

    # Models: lineage; a tainted version is refused, an untainted one is rolled back to.
    sibling = _untainted_sibling(settings, v2["id"])
    page.get_by_role("link", name="Models").click()
    tree = page.get_by_role("list", name="Lineage of digits-mlp")
    expect(tree.locator(f"li[data-version='{v1['id']}']").first).to_contain_text("tainted")
    page.get_by_role("button", name="Roll back to v1").click()
    dialog = page.get_by_role("dialog", name="Roll back")
    expect(dialog).to_contain_text("tainted")
    dialog.get_by_role("button", name="Roll back").click()
    expect(page.get_by_role("alert").filter(has_text="refused")).to_contain_text("tainted")
    shot(page, "06-tainted-refused")

    page.get_by_role("button", name=f"Roll back to v{sibling}").click()
    dialog.get_by_label("Reason (written to the audit log)").fill("prefer the exact retrain")
    dialog.get_by_role("button", name="Roll back").click()
    expect(page.get_by_role("status")).to_contain_text(f"Rolled back digits-mlp to v{sibling}")
    expect(page.locator("article.model")).to_contain_text(f"Champion: v{sibling}")
    shot(page, "07-rolled-back")
    models = httpx.get(f"{base}/v1/models", headers={"X-API-Key": keys["op"]}).json()
    assert models[0]["champion"]["version"] == sibling

    # Jobs and compliance views render from the live API too.
    from workers.heartbeat import beat

    beat(settings, "gpu-worker@test", "gpu")
    page.get_by_role("link", name="Jobs").click()
    expect(page.locator("#workers-table")).to_contain_text("gpu-worker@test")
    expect(page.locator("#jobs-table")).to_contain_text("done")
    shot(page, "08-jobs")
    page.get_by_role("link", name="Compliance").click()
    expect(page.locator("#compliance-table")).to_contain_text("never checked")
    page.get_by_role("button", name="Re-run check").click()
    page.get_by_role("dialog", name="Re-run compliance check").get_by_role("button", name="Run check").click()
    # the check re-verifies the champion (a retrain reference on a busy machine): more than the 5 s default
    expect(page.get_by_role("status")).to_contain_text("Compliance check of digits-mlp finished", timeout=60_000)
    expect(page.locator("#compliance-table")).to_contain_text("operator")  # the trigger
    expect(page.locator("#compliance-table")).to_contain_text("pass")
    shot(page, "09-compliance")
    page.get_by_role("link", name="Requests").click()
    assert page.evaluate(UNLABELLED) == []
    assert page.js_errors == []
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Operator sign-in")).to_be_visible()
    assert page.evaluate("() => fetch('/v1/overview').then(r => r.status)") == 401  # the cookie is gone


def test_submitter_keys_and_wrong_keys_are_refused_at_login(server, page):
    base, keys, _ = server
    login(page, base, keys["sub"])
    sync_api.expect(page.locator("#login-error")).to_contain_text("for operators")
    login(page, base, "ul_not-a-key")
    sync_api.expect(page.locator("#login-error")).to_contain_text("unknown or revoked")
    sync_api.expect(page.get_by_role("navigation", name="Sections")).to_be_hidden()
    shot(page, "00-login-refused")


def _serve_and_fail_one(settings, base: str, key: str) -> tuple[str, str]:
    """Two requests with case numbers: the first served to completion by a worker node, the second's job
    failed (as a worker gives up after its attempts). Returns (completed id, failed id)."""
    from unlearn.coalesce import coalesce
    from unlearn.jobs import _give_up, run_job
    from unlearn.store.db import session_scope
    from unlearn.store.models import UnlearningJob

    ids = []
    for subject, case in (("subject-0001", "CASE-2041"), ("subject-0002", "CASE-2042")):
        resp = httpx.post(f"{base}/v1/deletion-requests",
                          headers={"X-API-Key": key, "Idempotency-Key": uuid.uuid4().hex},
                          json={"model": "digits-mlp", "external_id": case,
                                "scope": {"type": "subject", "subject": subject}})
        assert resp.status_code == 202, resp.text
        ids.append(resp.json()["id"])
        with session_scope(settings.resolved_database_url) as s:
            (job_id,) = coalesce(s, settings, force=True)
        if case == "CASE-2041":
            assert run_job(settings, job_id, f"embedded-gpu@localhost:{uuid.uuid4()}").status == "done"
        else:
            with session_scope(settings.resolved_database_url) as s:
                _give_up(s, s.get(UnlearningJob, job_id), "embedded-gpu@localhost:x", "CUDA out of memory")
    return ids[0], ids[1]


def test_request_table_fits_a_narrow_window_and_shows_case_verdict_certificate_and_actions(server, page):
    """At 900 px: the case number, the verdict, a certificate link and actions (a failed request's retry)
    are in the table with no column cut off; the details open in view, and the audit trail names the
    key's label, tenant and role and the worker instead of raw ids."""
    from api.auth import create_api_key
    from unlearn.store.db import session_scope

    base, keys, settings = server
    expect = sync_api.expect
    page.set_viewport_size({"width": 900, "height": 1000})
    page.goto(f"{base}/dashboard")
    hint = page.locator("#api-key-help code").inner_text()  # the sign-in hint is a command that runs
    from cli.main import build_parser

    build_parser().parse_args(shlex.split(hint.removeprefix("unlearn ")))
    with session_scope(settings.resolved_database_url) as s:
        desk = create_api_key(s, "tenant-a", "submitter", label="Privacy desk")
    done, failed = _serve_and_fail_one(settings, base, desk)
    login(page, base, keys["op"])
    done_row, failed_row = (page.locator(f"tr[data-request='{rid}']") for rid in (done, failed))
    expect(done_row).to_contain_text("CASE-2041")
    expect(done_row).to_contain_text("completed")
    expect(done_row.locator("td").nth(3)).to_have_text("pass")  # the verdict column
    certificate = done_row.get_by_role("link", name=f"Certificate of request {done}")
    expect(certificate).to_have_attribute("href", f"/v1/deletion-requests/{done}/certificate")
    expect(failed_row).to_contain_text("CASE-2042")
    expect(failed_row).to_contain_text("failed")
    expect(failed_row.get_by_role("button", name=re.compile(f"^Retry job .* of request {failed}$"))).to_be_visible()
    shot(page, "10-narrow-table")

    # Nothing cut off at 900 px: the table needs no sideways scroll, and its last column is on screen.
    wrap = page.locator("#view-requests .table-wrap").first
    assert wrap.evaluate("el => el.scrollWidth <= el.clientWidth"), "the request table scrolls sideways"
    for header in ("External id", "Verdict", "Actions"):
        expect(page.get_by_role("columnheader", name=header, exact=True)).to_be_in_viewport(ratio=1)
    for button in (certificate, failed_row.get_by_role("button", name=f"Details of request {failed}")):
        expect(button).to_be_in_viewport(ratio=1)

    # A long page: scrolled to the bottom, the details still open in view, audit trail included.
    page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
    done_row.get_by_role("button", name=f"Details of request {done}").click()
    detail = page.locator("#request-detail")
    expect(detail.get_by_role("heading", name=f"Request {done}")).to_be_in_viewport()
    audit = page.locator("#audit-table")
    expect(audit).to_contain_text("Privacy desk (submitter, tenant tenant-a)")
    expect(audit).to_contain_text("worker embedded-gpu@localhost")
    expect(audit.locator("tbody tr").first).to_be_in_viewport()
    assert "key:" not in audit.inner_text()
    shot(page, "11-narrow-details")
    assert page.evaluate(UNLABELLED) == []

    # The other views' tables fit the narrow window too.
    for view, table in (("Jobs", "#jobs-table"), ("Models", None), ("Compliance", "#compliance-table")):
        page.get_by_role("link", name=view).click()
        if table:
            expect(page.locator(f"{table} tbody tr").first).to_be_visible()
        shot(page, f"12-narrow-{view.lower()}")
        wide = page.evaluate("""() => [...document.querySelectorAll('.table-wrap')]
            .filter(el => el.offsetParent !== null && el.scrollWidth > el.clientWidth)
            .map(el => el.querySelector('table').id)""")
        assert wide == [], f"{view}: {wide} scroll sideways at 900 px"
    # No check yet: the page says when checks run (the embedded runtime and beat both sweep every interval).
    expect(page.locator("#compliance-table")).to_contain_text("never checked (scheduled every 60.0 min)")
    assert page.js_errors == []


def test_the_api_reference_renders_offline(server, page):
    """/docs on a closed network: every request that leaves the server is refused, and Swagger UI still
    renders the operations (its files come from the installed package, not a CDN)."""
    base, _, _ = server
    outside: list[str] = []

    def only_the_server(route):
        if route.request.url.startswith(base):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_server)
    page.goto(f"{base}/docs")
    create = page.locator("#operations-requests-createDeletionRequest")
    sync_api.expect(create).to_be_visible()
    sync_api.expect(create).to_contain_text("Submit a deletion request")
    assert httpx.get(f"{base}/redoc").status_code == 404  # ReDoc's page would load its logo from a CDN
    shot(page, "13-api-reference")
    assert outside == []
    assert page.js_errors == []
