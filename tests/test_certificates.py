"""Deletion certificates: issued on completion, signed with Ed25519, verifiable offline; any edit breaks them."""

from __future__ import annotations

import base64
import copy
import json
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import pytest
from sqlmodel import select

from tests.conftest import register
from unlearn import certificates
from unlearn.certificates import (
    canonical_json,
    canonical_json_v1,
    check_certificate,
    load_signing_key,
    public_key_pem,
    verify_certificate,
)
from unlearn.coalesce import coalesce
from unlearn.intake import DeletionRequestIn, submit
from unlearn.jobs import run_job
from unlearn.settings import Settings
from unlearn.store.db import migrate, session_scope
from unlearn.store.models import AuditEvent, Certificate, DeletionRequest, ModelVersion, utcnow

SUBJECT = "subject-0001"
MODEL = "digits-acu"  # the shared request's model


@pytest.fixture(scope="module")
def completed(tmp_path_factory, zoo_dir):
    """One subject forgotten from digits-acu, end to end (shared by this file's tests), by a method whose
    candidate is checked for real, so that the certificate carries a real table: ACU's update against its
    parent's sufficient statistics (`auto` picks `retrain` on digits-mlp, which is exact by construction: see
    the test of that below). The method is exact: a subject of a few samples is indistinguishable from the
    retrain before unlearning, and an approximate method's candidate would not be certified
    (tests/test_ulira.py)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("cert") / "data", batch_window_s=0.0, lease_s=30.0)
    migrate(settings.resolved_database_url)
    register(settings, zoo_dir, MODEL)
    rid, doc = _forget_and_certify(settings, "acu", MODEL)
    return settings, rid, doc


def _forget_and_certify(settings, method: str, model: str = "digits-mlp") -> tuple[str, dict]:
    """Forget SUBJECT from `model` with `method`, end to end; the request id and its certificate."""
    with session_scope(settings.resolved_database_url) as s:
        request, _ = submit(s, settings, "tenant-a", DeletionRequestIn(
            model=model, method=method, scope={"type": "subject", "subject": SUBJECT}), actor="test")
        rid = request.id
    with session_scope(settings.resolved_database_url) as s:
        (job_id,) = coalesce(s, settings, force=True)
    assert run_job(settings, job_id, "test-worker").status == "done"
    with session_scope(settings.resolved_database_url) as s:
        return rid, certificates.document(s.get(Certificate, rid))


def test_the_key_is_made_once_private_and_stable(tmp_path):
    settings = Settings(data_dir=tmp_path)
    pem = public_key_pem(settings)
    path = settings.resolved_signing_key_path
    assert path == tmp_path / "keys" / "service_ed25519.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert public_key_pem(settings) == pem  # loaded, not regenerated
    assert certificates.key_id(pem) == certificates.key_id(pem.encode()) and len(certificates.key_id(pem)) == 64
    other = Settings(data_dir=tmp_path / "elsewhere", signing_key_path=tmp_path / "mine.pem")
    assert public_key_pem(other) != pem and (tmp_path / "mine.pem").exists()


def test_a_completed_request_gets_a_certificate_that_verifies(completed):
    settings, rid, doc = completed
    assert verify_certificate(doc, public_key_pem(settings))
    body = doc["certificate"]
    assert body["request"]["id"] == rid and body["request"]["completed_at"] and body["issued_at"]
    assert len(body["request"]["subject_hash"]) == 64 and SUBJECT not in json.dumps(doc)
    (model,) = body["models"]
    with session_scope(settings.resolved_database_url) as s:
        versions = {v.version: v for v in s.exec(select(ModelVersion).where(ModelVersion.model_name == MODEL))}
        events = s.exec(select(AuditEvent).where(AuditEvent.entity_type == "certificate",
                                                 AuditEvent.entity_id == rid)).all()
    new = versions[2]
    assert model["model"] == MODEL and model["method"] == new.method and model["forgotten_samples"] >= 1
    assert model["new_version"]["id"] == new.id and model["new_version"]["weights_sha256"] == new.weights_sha256
    assert model["verifier"]["verdict"] == "pass"
    assert set(model["verifier"]["criteria"]) >= {"update_statistics", "ledger"}
    verifier = model["verifier"]
    assert verifier["thresholds"]["update_statistics"] == {
        "op": "<=", "threshold": verifier["criteria"]["update_statistics"]["threshold"]}
    assert verifier["gate_overrides"] == {}  # none set: the verifier's defaults applied
    (retired,) = model["tainted_versions_retired"]
    assert retired["id"] == versions[1].id and retired["held_request_data"] is True
    assert [e.to_state for e in events] == ["issued"]


def _leaves(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(obj, list) and obj:
        for i, v in enumerate(obj):
            yield from _leaves(v, (*path, i))
    else:
        yield path, obj


def _edited(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value[:-1] + ("0" if value[-1:] != "0" else "1")
    if isinstance(value, list):
        return ["added"]
    return "edited"


def test_any_edited_field_fails_verification(completed):
    settings, _, doc = completed
    pem = public_key_pem(settings)
    paths = list(_leaves(doc))
    assert len(paths) > 40
    for path, value in paths:
        forged = copy.deepcopy(doc)
        node = forged
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = _edited(value)
        assert not verify_certificate(forged, pem), f"an edit of {'/'.join(map(str, path))} went unnoticed"
    extra = copy.deepcopy(doc)
    extra["certificate"]["request"]["note"] = "added later"
    assert "signature" in check_certificate(extra, pem)
    stranger = public_key_pem(Settings(data_dir=settings.data_dir / "another-service"))
    assert "another key" in check_certificate(doc, stranger)
    assert check_certificate({"certificate": "x"}, pem)


def test_cli_verifies_offline_and_rejects_a_forgery(completed, tmp_path, capsys):
    from cli.main import main

    settings, _, doc = completed
    key = tmp_path / "service.pub.pem"
    key.write_text(public_key_pem(settings))
    good = tmp_path / "cert.json"
    good.write_text(json.dumps(doc))
    assert main(["verify-certificate", str(good), "--public-key", str(key)]) == 0
    assert "certificate valid" in capsys.readouterr().out
    forged = copy.deepcopy(doc)
    forged["certificate"]["models"][0]["new_version"]["weights_sha256"] = "0" * 64
    bad = tmp_path / "forged.json"
    bad.write_text(json.dumps(forged))
    assert main(["verify-certificate", str(bad), "--public-key", str(key)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("unlearn: certificate INVALID") and "\n" not in err


# RFC 8785 section 3.2.2.3: IEEE 754 doubles (as hex) and the text JCS writes for each.
RFC8785_NUMBERS = [
    ("0000000000000000", "0"), ("8000000000000000", "0"), ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"), ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"), ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"), ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"), ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"), ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"), ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"), ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"), ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"), ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"), ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), RFC8785_NUMBERS)
def test_numbers_are_written_as_rfc_8785_says(bits, text):
    (number,) = struct.unpack(">d", bytes.fromhex(bits))
    assert canonical_json(number) == text.encode()


def test_rfc_8785_examples_come_out_byte_for_byte():
    # Section 3.2.2 (input) and 3.2.3 (output): number forms, string escapes, literals, key order.
    source = r"""{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"""
    assert canonical_json(json.loads(source)) == (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}').encode()
    # Section 3.2.3's sorting example: keys ordered by their UTF-16 code units, not by code points
    # (the emoji's surrogates sort before U+FB33) nor by their UTF-8 bytes.
    keys = json.loads(r"""{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis"}""")
    assert list(json.loads(canonical_json(keys))) == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    # and the numbers Python's json.dumps writes its own way: the reason certificates moved to JCS
    assert canonical_json([1.0, 0.0, -0.0, 1e-09, 1e21]) == b"[1,0,0,1e-9,1e+21]"
    assert canonical_json_v1([1.0, 1e-09]) == b"[1.0,1e-09]"


def test_issued_certificates_are_format_2_and_earlier_formats_still_verify(completed):
    settings, _, doc = completed
    pem = public_key_pem(settings)
    assert doc["certificate"]["format"] == 2
    # A certificate issued before JCS: format 1, signed over Python's canonical form.
    legacy = copy.deepcopy(doc)
    legacy["certificate"]["format"] = 1
    key = load_signing_key(settings)
    legacy["signature"] = base64.b64encode(key.sign(canonical_json_v1(legacy["certificate"]))).decode()
    assert check_certificate(legacy, pem) is None
    # the two forms differ on this body, so each format is checked in its own form and not the other's
    assert canonical_json_v1(doc["certificate"]) != canonical_json(doc["certificate"])
    relabelled = copy.deepcopy(legacy)
    relabelled["certificate"]["format"] = 2
    assert "signature" in check_certificate(relabelled, pem)
    unknown = copy.deepcopy(doc)
    unknown["certificate"]["format"] = 3
    assert "unknown certificate format 3" in check_certificate(unknown, pem)


def test_integers_beyond_a_double_are_kept_as_strings():
    body = certificates._finite({"big": 2**60, "small": -(2**53 - 1), "flag": True, "nan": float("nan")})
    assert body == {"big": str(2**60), "small": -(2**53 - 1), "flag": True, "nan": None}
    assert canonical_json(body) == b'{"big":"1152921504606846976","flag":true,"nan":null,"small":-9007199254740991}'


NODE_VERIFIER = Path(__file__).with_name("verify_certificate.mjs")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed: no second-language verifier")
def test_an_independent_javascript_verifier_accepts_the_certificate(completed, tmp_path):
    """Node's crypto and a JCS written from the RFC alone agree with the service; one edited character
    is caught."""
    settings, _, doc = completed
    key = tmp_path / "service.pub.pem"
    key.write_text(public_key_pem(settings))

    def node_says(text: str) -> str:
        path = tmp_path / "certificate.json"
        path.write_text(text)
        done = subprocess.run(["node", str(NODE_VERIFIER), str(path), str(key)], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == (0 if done.stdout.startswith("valid") else 1), done.stderr
        return done.stdout.strip()

    # floats Python writes differently from JavaScript are in the body, so the check has teeth
    assert canonical_json_v1(doc["certificate"]) != canonical_json(doc["certificate"])
    text = json.dumps(doc, indent=2)
    assert node_says(text) == "valid"
    sha = doc["certificate"]["models"][0]["new_version"]["weights_sha256"]
    edited = sha[:-1] + ("0" if sha[-1] != "0" else "1")
    assert text.count(sha) == 1
    assert node_says(text.replace(sha, edited)).startswith("invalid: the signature")


def test_a_retrain_is_exact_by_construction_not_by_a_vacuous_table(settings, zoo_dir):
    """`retrain` is its own reference: the verdict and the certificate say so instead of offering
    all-zero differences as evidence; a method checked against an independent retrain keeps its table."""
    register(settings, zoo_dir)
    _, doc = _forget_and_certify(settings, "retrain")
    with session_scope(settings.resolved_database_url) as s:
        version = s.get(ModelVersion, doc["certificate"]["models"][0]["new_version"]["id"])
        report = dict(version.metrics)
    assert report["exact_by_construction"] is True and report["note"].startswith("exact by construction")
    assert report["criteria"]  # kept for the record
    verifier = doc["certificate"]["models"][0]["verifier"]
    assert verifier["exact_by_construction"] is True and verifier["note"] == report["note"]
    assert verifier["criteria"] == {} and verifier["thresholds"] == {} and verifier["verdict"] == "pass"
    assert verify_certificate(doc, public_key_pem(settings))


def test_a_method_checked_against_a_retrain_presents_its_table(completed):
    _, _, doc = completed
    (model,) = doc["certificate"]["models"]
    assert model["method"] != "retrain"
    assert model["verifier"]["exact_by_construction"] is False and "note" not in model["verifier"]
    assert model["verifier"]["criteria"]


def test_a_batch_of_certificates_says_what_one_at_a_time_says(completed):
    """issue_certificates reads what a job's requests share once (`_Batch`); the body must not change."""
    from unlearn.certificates import _Batch, certificate_body

    settings, rid, doc = completed
    with session_scope(settings.resolved_database_url) as s:
        request = s.get(DeletionRequest, rid)
        at = utcnow()
        alone = certificate_body(s, settings, request, kid="k", issued_at=at)
        others = [r for r in s.exec(select(DeletionRequest.id)).all() if r != rid]
        batched = certificate_body(s, settings, request, kid="k", issued_at=at,
                                   batch=_Batch(s, [*others, rid, "no-such-request"], at))
    assert batched == alone
    assert alone["models"] and alone["models"][0]["attempts"] and alone["models"][0]["new_version"]
    assert alone["models"] == doc["certificate"]["models"]  # what the job's transaction issued
