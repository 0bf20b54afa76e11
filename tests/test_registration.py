"""Registering a team's own model: everything is checked before anything is kept, a refusal leaves
nothing behind, the same content again is a no-op, subjects are never stored in the clear, and a
subject request then reaches the model. On SQLite and PostgreSQL, through the library, the CLI and
the API. A toy family (a "model" that is the set of record ids it memorised) keeps this fast; the
real families' checks have their own tests (test_diffusion_byo.py, test_lm_byo.py, test_classifier_byo.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from unlearn import registration
from unlearn.contracts import Progress, SampleRecord, Scope, no_progress
from unlearn.data import records as rec
from unlearn.families import Family, register_family
from unlearn.intake import DeletionRequestIn, submit
from unlearn.registration import Registration, RegistrationError
from unlearn.settings import Settings
from unlearn.store.db import migrate, session_scope
from unlearn.store.models import AuditEvent, Model, ModelVersion, TrainingRecord
from unlearn.verify import Verdict

ROOT = Path(__file__).resolve().parents[1]


class MemoFamily(Family):
    """A model folder holding `memo.json`: {"arch": "memo-v1", "ids": [the ids it trained on]}."""

    name = "memo"
    reference_policies = ("retrain", "holdout", "precomputed")

    def samples(self, model_dir: Path) -> list[SampleRecord]:
        from unlearn.artifacts import read_meta

        return rec.load(read_meta(model_dir)["dataset"]["path"]).records()

    def auto_method(self, model_dir: Path, scope: Scope) -> str:
        return "retrain"

    def retrain(self, model_dir: Path, keep_ids: Sequence[str], out_dir: Path, *, device: str = "cpu",
                progress: Progress = no_progress) -> None:
        raise NotImplementedError

    def verify(self, *args: Any, **kwargs: Any) -> Verdict:
        raise NotImplementedError

    def byo_meta(self, model_dir: Path, records: Any, options: dict[str, Any]) -> dict[str, Any]:
        if options["reference"] == "retrain" and not (options.get("recipe") or {}).get("epochs"):
            raise ValueError("the memo recipe needs epochs")
        return {"arch": "memo-v1"}

    def check_forward(self, model_dir: Path, records: Any) -> None:
        memo = json.loads((Path(model_dir) / "memo.json").read_text())
        if memo.get("arch") != "memo-v1":  # "weights" of another architecture
            raise ValueError(f"the weights are of architecture {memo.get('arch')!r}, not memo-v1")
        unknown = set(memo["ids"]) - set(records.ids_in("train"))
        if unknown:
            raise ValueError(f"the model memorised {len(unknown)} ids that are not training records")


register_family("memo", f"{__name__}:MemoFamily")


def _team(tmp_path: Path, *, n: int = 30, holdout: int = 10, arch: str = "memo-v1") -> dict[str, Path]:
    """A team's folder, records (JSONL, customer ids in `customer_id`) and holdout; returns the paths."""
    model = tmp_path / "team-model"
    model.mkdir(exist_ok=True)
    train = [{"id": f"t-{i:03d}", "customer_id": f"cust-{i % 10:04d}", "text": f"ticket {i} of customer {i % 10}"}
             for i in range(n)]
    held = [{"id": f"h-{i:03d}", "customer_id": f"cust-{100 + i:04d}", "text": f"held ticket {i}"} for i in range(holdout)]
    (model / "memo.json").write_text(json.dumps({"arch": arch, "ids": [r["id"] for r in train]}))
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (tmp_path / "holdout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held))
    (tmp_path / "recipe.json").write_text(json.dumps({"epochs": 3}))
    return {"model": model, "train": tmp_path / "train.jsonl", "holdout": tmp_path / "holdout.jsonl",
            "recipe": tmp_path / "recipe.json"}


FIELDS = rec.FieldMap(id="id", subject="customer_id", text="text")


def _reg(paths: dict[str, Path], **kw: Any) -> Registration:
    base: dict[str, Any] = dict(name="support-memo", family="memo", path=paths["model"], records=paths["train"],
                                holdout=paths["holdout"], fields=FIELDS, reference="holdout")
    return Registration(**{**base, **kw})


@pytest.fixture(params=["sqlite", "postgresql"])
def settings_db(request, tmp_path):
    if request.param == "sqlite":
        s = Settings(data_dir=tmp_path / "data", batch_window_s=0.0)
        migrate(s.resolved_database_url)
        yield s
        return
    from tests.procs import postgres_database

    with postgres_database() as url:
        s = Settings(data_dir=tmp_path / "data", database_url=url, batch_window_s=0.0)
        migrate(url)
        yield s


def _left_behind(settings: Settings, name: str = "support-memo") -> list[str]:
    root = settings.resolved_artifact_root
    found = [str(p) for p in root.glob(f"{name}*")] if root.exists() else []
    found += [str(p) for p in (root / registration.STAGING).glob("*")] if (root / registration.STAGING).exists() else []
    with session_scope(settings.resolved_database_url) as s:
        if s.get(Model, name) is not None:
            found.append("model row")
        if s.exec(select(TrainingRecord).where(TrainingRecord.model_name == name)).first() is not None:
            found.append("training records")
    return found


def _register(settings: Settings, reg: Registration) -> registration.Registered:
    with session_scope(settings.resolved_database_url) as s:
        return registration.register(s, reg, artifact_root=settings.resolved_artifact_root, salt=settings.subject_salt)


def test_a_team_model_registers_and_a_subject_request_reaches_it(settings_db, tmp_path):
    paths = _team(tmp_path)
    done = _register(settings_db, _reg(paths))
    assert done.created and done.counts == {"train": 30, "holdout": 10, "subjects": 20}
    with session_scope(settings_db.resolved_database_url) as s:
        d = registration.describe(s, "support-memo")
        assert d["records"] == {"train": 30, "holdout": 10, "subjects": 20}
        assert d["reference_policy"] == "holdout" and d["registered"] and d["dataset"] == "records"
        assert any(e.entity_type == "model" and e.to_state == "registered" for e in s.exec(select(AuditEvent)).all())
    # the raw customer id is nowhere: not in the database, not in any file the registry wrote
    root = settings_db.resolved_artifact_root
    for p in root.rglob("*"):
        if p.is_file():
            assert b"cust-0003" not in p.read_bytes(), p
    with session_scope(settings_db.resolved_database_url) as s:
        assert all("cust-" not in (r.subject_hash or "") for r in s.exec(select(TrainingRecord)).all())
        body = DeletionRequestIn.model_validate({"scope": {"type": "subject", "subject": "cust-0003"}})
        _, targets = submit(s, settings_db, "t", body)
        assert [(t.model_name, sorted(t.forget_ids)) for t in targets] == [
            ("support-memo", ["t-003", "t-013", "t-023"])]  # never the holdout


def test_the_same_content_again_is_a_no_op_and_other_content_is_refused(settings_db, tmp_path):
    paths = _team(tmp_path)
    first = _register(settings_db, _reg(paths))
    again = _register(settings_db, _reg(paths))
    assert not again.created and again.version_id == first.version_id and "nothing changed" in again.message()
    with session_scope(settings_db.resolved_database_url) as s:
        assert len(s.exec(select(ModelVersion).where(ModelVersion.model_name == "support-memo")).all()) == 1
    (paths["train"]).write_text(paths["train"].read_text().replace("ticket 5 ", "ticket five "))
    with pytest.raises(registration.AlreadyRegistered, match="other content"):
        _register(settings_db, _reg(paths))


@pytest.mark.parametrize("fault, message", [
    ("duplicate", "train.jsonl: row 7: duplicate id 't-002'"),
    ("empty_text", "train.jsonl: row 4: empty text (text)"),
    ("overlap", "holdout.jsonl: row 0: id 't-000' is also a training record"),
    ("no_holdout", "the holdout policy needs records the model never trained on"),
    ("weights", "the weights are of architecture 'memo-v2', not memo-v1"),
    ("unknown_field", "no column 'owner' (mapped to subject)"),
    ("no_recipe", "the memo recipe needs epochs"),
    ("policy", "verifies under the reference policies retrain, holdout, precomputed, not 'exact'"),
    ("no_reference_dir", "the precomputed policy needs the reference folder (--reference-dir)"),
    ("missing_folder", "no such folder"),
])
def test_a_bad_registration_is_refused_with_one_line_and_leaves_nothing(settings_db, tmp_path, fault, message):
    paths = _team(tmp_path, arch="memo-v2" if fault == "weights" else "memo-v1")
    kw: dict[str, Any] = {}
    lines = paths["train"].read_text().splitlines()
    if fault == "duplicate":
        lines[7] = lines[7].replace('"t-007"', '"t-002"')
    elif fault == "empty_text":
        lines[4] = json.dumps({**json.loads(lines[4]), "text": "  "})
    elif fault == "overlap":
        paths["holdout"].write_text(json.dumps({"id": "t-000", "customer_id": "x", "text": "y"}) + "\n")
    elif fault == "no_holdout":
        kw["holdout"] = None
    elif fault == "unknown_field":
        kw["fields"] = rec.FieldMap(id="id", subject="owner", text="text")
    elif fault == "no_recipe":
        kw["reference"] = "retrain"
    elif fault == "policy":
        kw["reference"] = "exact"
    elif fault == "no_reference_dir":
        kw["reference"] = "precomputed"
    elif fault == "missing_folder":
        kw["path"] = tmp_path / "nowhere"
    paths["train"].write_text("\n".join(lines) + "\n")
    with pytest.raises(RegistrationError) as err:
        _register(settings_db, _reg(paths, **kw))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert _left_behind(settings_db) == []


def test_records_uploaded_in_batches_resume_and_register(settings_db, tmp_path):
    import datasets

    paths = _team(tmp_path)
    rows = [json.loads(line) for line in paths["train"].read_text().splitlines()]
    root, salt = settings_db.resolved_artifact_root, settings_db.subject_salt
    for b, chunk in enumerate([rows[:12], rows[12:24], rows[24:]]):
        registration.save_upload(root, "support-memo", b, datasets.Dataset.from_list(chunk), FIELDS, salt=salt)
    # the second batch again (a client that lost the answer) and a holdout batch
    status = registration.save_upload(root, "support-memo", 1, datasets.Dataset.from_list(rows[12:24]), FIELDS,
                                      salt=salt)
    assert status["batches"] == [0, 1, 2] and status["total"] == 30
    held = [json.loads(line) for line in paths["holdout"].read_text().splitlines()]
    registration.save_upload(root, "support-memo", 3, datasets.Dataset.from_list(held), FIELDS, salt=salt,
                             split="holdout")
    for p in (root / registration.UPLOADS).rglob("*"):
        assert not p.is_file() or b"cust-0003" not in p.read_bytes()  # hashed on arrival
    # a record sent again with other content is a conflict, named
    changed = [{**rows[0], "text": "another text"}]
    registration.save_upload(root, "support-memo", 4, datasets.Dataset.from_list(changed), FIELDS, salt=salt)
    with pytest.raises(RegistrationError, match="'t-000' was uploaded before with other content"):
        _register(settings_db, _reg(paths, records=None, holdout=None))
    (registration.uploads_dir(root, "support-memo") / "batch-000004.json").unlink()
    done = _register(settings_db, _reg(paths, records=None, holdout=None))
    assert done.counts == {"train": 30, "holdout": 10, "subjects": 20}
    assert not registration.uploads_dir(root, "support-memo").exists()  # consumed by the registration


def test_cli_register_refuses_with_exit_2_and_one_line(tmp_path):
    paths = _team(tmp_path)
    env = {"UNLEARN_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-c", "import tests.test_registration, sys; from cli.main import main; "
            "sys.exit(main(sys.argv[1:]))", "model", "register", "support-memo", "--family", "memo",
            "--path", str(paths["model"]), "--records", str(paths["train"]), "--holdout", str(paths["holdout"]),
            "--subject-field", "customer_id", "--text-field", "text", "--reference", "holdout"]
    ok = subprocess.run(base, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "support-memo: registered" in ok.stdout and "30 training records, 10 holdout, 20 subjects" in ok.stdout
    again = subprocess.run(base, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert again.returncode == 0 and "nothing changed" in again.stdout
    bad = subprocess.run([*base[:5], "other-memo", *base[6:-2], "--reference", "retrain"], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "unlearn: other-memo: the memo recipe needs epochs"


def test_api_registers_uploads_and_describes(api, tmp_path):
    paths = _team(tmp_path)
    op = {"X-API-Key": api.keys["op"]}
    body = {"name": "root-memo", "family": "memo", "path": "/", "records": str(paths["train"]), "reference": "holdout"}
    refused = api.post("/v1/models", json=body, headers=op)  # no registration roots: nothing is read
    assert refused.status_code == 403 and "UNLEARN_REGISTRATION_ROOTS" in refused.json()["detail"]
    api.settings.registration_roots = [tmp_path]
    outside = api.post("/v1/models", json=body, headers=op)
    assert outside.status_code == 403 and outside.json()["detail"].startswith("/ is outside")
    (tmp_path / "escape").symlink_to("/etc")
    escaped = api.post("/v1/models", json={**body, "path": str(tmp_path / "escape")}, headers=op)
    assert escaped.status_code == 403
    body = {"name": "support-memo", "family": "memo", "path": str(paths["model"]), "records": str(paths["train"]),
            "holdout": str(paths["holdout"]), "fields": {"id": "id", "subject": "customer_id", "text": "text"},
            "reference": "holdout"}
    assert api.post("/v1/models", json=body, headers={"X-API-Key": api.keys["a"]}).status_code == 403
    r = api.post("/v1/models", json=body, headers=op)
    assert r.status_code == 201, r.text
    assert r.json()["records"] == {"train": 30, "holdout": 10, "subjects": 20} and r.json()["created"]
    assert r.headers["location"] == "/v1/models/support-memo"
    assert api.post("/v1/models", json=body, headers=op).status_code == 200
    got = api.get("/v1/models/support-memo", headers={"X-API-Key": api.keys["a"]}).json()
    assert got["reference_policy"] == "holdout" and got["champion"]["version"] == 1
    bad = api.post("/v1/models", json={**body, "name": "bad-memo", "reference": "retrain"}, headers=op)
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    assert bad.json()["detail"] == "bad-memo: the memo recipe needs epochs"
    assert api.get("/v1/models/bad-memo", headers=op).status_code == 404
    # records uploaded as NDJSON batches, then registered without a records path
    lines = paths["train"].read_text().splitlines()
    q = "?subject=customer_id&text=text"
    for b, chunk in enumerate([lines[:15], lines[15:]]):
        up = api.post(f"/v1/models/other-memo/records{q}&batch={b}", content="\n".join(chunk).encode(),
                      headers={**op, "Content-Type": "application/x-ndjson"})
        assert up.status_code == 200, up.text
    assert up.json() == {"batch": 1, "records": 15, "batches": [0, 1], "total": 30}
    bad_row = api.post(f"/v1/models/other-memo/records{q}&batch=2", content=b'{"id": "", "customer_id": "c", "text": "x"}',
                       headers={**op, "Content-Type": "application/x-ndjson"})
    assert bad_row.status_code == 422 and "row 0: empty id" in bad_row.json()["detail"]
    assert api.post(f"/v1/models/other-memo/records{q}", content=b"x",
                    headers={**op, "Content-Type": "text/plain"}).status_code == 415
    held = api.post(f"/v1/models/other-memo/records{q}&batch=2&holdout=true", content=paths["holdout"].read_bytes(),
                    headers={**op, "Content-Type": "application/x-ndjson"})
    assert held.status_code == 200 and held.json()["total"] == 40
    r = api.post("/v1/models", json={**body, "name": "other-memo", "records": None, "holdout": None}, headers=op)
    assert r.status_code == 201, r.text
    assert r.json()["records"] == {"train": 30, "holdout": 10, "subjects": 20}
    assert api.post(f"/v1/models/other-memo/records{q}", content=lines[0].encode(),
                    headers={**op, "Content-Type": "application/x-ndjson"}).status_code == 409


def test_a_leftover_of_a_registration_that_died_is_replaced(settings_db, tmp_path):
    paths = _team(tmp_path)
    leftover = settings_db.resolved_artifact_root / "support-memo" / "v1"
    leftover.mkdir(parents=True)
    (leftover / "junk.bin").write_bytes(b"x" * 10)
    _register(settings_db, _reg(paths))
    assert not (leftover / "junk.bin").exists() and (leftover / "memo.json").exists()


def test_a_precomputed_reference_is_copied_in_with_its_own_manifest(settings_db, tmp_path):
    from unlearn import registry
    from unlearn.artifacts import read_meta
    from unlearn.verification import reference_for

    paths = _team(tmp_path)
    ref = tmp_path / "team-reference"
    ref.mkdir()
    (ref / "memo.json").write_text(json.dumps({"arch": "memo-v1", "ids": []}))
    _register(settings_db, _reg(paths, reference="precomputed", reference_dir=ref))
    (ref / "memo.json").write_text("changed after registration")  # the registry kept its own copy
    with session_scope(settings_db.resolved_database_url) as s:
        base = registry.champion(s, "support-memo")
        model = s.get(Model, "support-memo")
        kept, _ = reference_for(settings_db, model, base, [], "precomputed")
    assert kept != ref and json.loads((kept / "memo.json").read_text())["arch"] == "memo-v1"
    assert read_meta(kept.parent.parent / "v1")["reference"] == {"policy": "precomputed", "dir": str(kept)}
    (kept / "memo.json").write_text("tampered")
    with pytest.raises(registry.ArtifactIntegrityError), session_scope(settings_db.resolved_database_url) as s:
        reference_for(settings_db, s.get(Model, "support-memo"), registry.champion(s, "support-memo"), [],
                      "precomputed")


@pytest.mark.parametrize("body, fmt, message", [
    (b'{"id": "a"}\n\xff\xfe', "ndjson", "not UTF-8 (byte 12)"),
    (b'{"id": "a"}\n[1, 2]\n', "ndjson", "line 2: a JSON object is expected, not list"),
    (b'{"id": "a"}\n{"id": \n', "ndjson", "line 2: not JSON"),
    (b'{"id": "a", "x": 1}\n{"id": "b", "x": {"y": 2}}\n', "ndjson", "do not hold one type each"),
    (b"\n\n", "ndjson", "no records"),
    (b"PAR1 not really a parquet file PAR1", "parquet", "cannot read Parquet"),
    (b'{"id": "a"}', "parquet", "not a Parquet file"),
])
def test_an_uploaded_body_is_parsed_without_a_native_json_reader_and_refused_by_line(body, fmt, message):
    with pytest.raises(rec.RecordError, match=message.replace("(", r"\(").replace(")", r"\)")):
        rec.table_from_bytes(body, fmt, source="batch 3")


def test_a_parquet_batch_uploads(tmp_path):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"id": ["a", "b"], "customer_id": ["c1", "c2"], "text": ["x", "y"]}), buf)
    table = rec.table_from_bytes(buf.getvalue(), "parquet")
    out = registration.save_upload(tmp_path, "memo", 0, table, FIELDS, salt="s")
    assert out == {"batch": 0, "records": 2, "batches": [0], "total": 2}
