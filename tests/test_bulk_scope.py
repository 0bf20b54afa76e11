"""Deletion requests over long lists, sent as an upload (NDJSON or Parquet) instead of inline JSON."""

from __future__ import annotations

import io
import json
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
from sqlmodel import select

from tests.conftest import post_request
from unlearn.coalesce import coalesce
from unlearn.identity import sha256_ids
from unlearn.jobs import run_job
from unlearn.store.db import session_scope
from unlearn.store.models import DeletionRequest, RequestTarget, TrainingRecord

NDJSON = "application/x-ndjson"
PARQUET = "application/vnd.apache.parquet"


def _train(settings, *, subjects=False) -> list[str]:
    with session_scope(settings.resolved_database_url) as s:
        col = TrainingRecord.subject_hash if subjects else TrainingRecord.sample_id
        return sorted(s.exec(select(col).where(TrainingRecord.model_name == "digits-mlp",
                                               TrainingRecord.split == "train")).all())


def _bulk(client, body: bytes, ctype=NDJSON, key="a", idem=None, **query):
    params = {"model": "digits-mlp", **query}
    return client.post("/v1/deletion-requests/bulk", params=params, content=body,
                       headers={"X-API-Key": client.keys[key], "Content-Type": ctype,
                                "Idempotency-Key": idem or uuid.uuid4().hex})


def _ndjson(key: str, values: list[str]) -> bytes:
    return "\n".join(json.dumps({key: v}) for v in values).encode()


def test_an_ndjson_list_of_sample_ids_becomes_one_samples_request(api):
    ids = _train(api.settings)[:400]
    r = _bulk(api, _ndjson("sample_id", ids + ids[:10]), external_id="partner-revocation-7")  # duplicates count once
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["scope"]["type"] == "samples" and "sample_ids" not in out["scope"]
    assert out["scope"]["bulk"] == {"column": "sample_id", "count": 400, "samples": 400, "sha256": sha256_ids(ids)}
    assert [t["samples"] for t in out["targets"]] == [400]
    with session_scope(api.settings.resolved_database_url) as s:
        (target,) = s.exec(select(RequestTarget).where(RequestTarget.request_id == out["id"])).all()
        assert target.forget_ids == sorted(ids)


def test_a_parquet_list_of_subjects_reaches_every_sample_of_each(api):
    buf = io.BytesIO()
    pq.write_table(pa.table({"subject": ["subject-0001", "subject-0002"]}), buf)
    r = _bulk(api, buf.getvalue(), PARQUET)
    assert r.status_code == 202, r.text
    one = post_request(api, {"model": "digits-mlp", "scope": {"type": "subject", "subject": "subject-0001"}}).json()
    two = post_request(api, {"model": "digits-mlp", "scope": {"type": "subject", "subject": "subject-0002"}}).json()
    expected = one["targets"][0]["samples"] + two["targets"][0]["samples"]
    assert r.json()["targets"][0]["samples"] == expected > 0


def test_bad_lists_are_refused_with_the_line_and_nothing_is_recorded(api):
    ids = _train(api.settings)
    cases = [
        (_ndjson("sample_id", ["no-such-sample"]), NDJSON, 422, "not in the training data"),
        (b'{"sample_id": "a"}\n{"subject": "b"}', NDJSON, 422, "line 2"),
        (b'{"sample_id": "a", "label": 3}', NDJSON, 422, "line 1: an object with one key"),
        (b'{"sample_id": ""}', NDJSON, 422, "1 to 128 characters"),
        (b"", NDJSON, 422, "empty"),
        (b"not parquet", PARQUET, 422, "not a Parquet file"),
        (_ndjson("subject", ["subject-0001", "nobody-ever"]), NDJSON, 422, "line or row 2"),
        (_ndjson("sample_id", ids[:3]), "text/csv", 415, "application/x-ndjson"),
    ]
    for body, ctype, status, detail in cases:
        r = _bulk(api, body, ctype)
        assert r.status_code == status, (body[:40], r.text)
        assert r.headers["content-type"].startswith("application/problem+json") and detail in r.json()["detail"]
    with session_scope(api.settings.resolved_database_url) as s:
        assert s.exec(select(DeletionRequest)).all() == []


def test_the_inline_limit_points_to_the_upload_and_the_upload_has_its_own(api):
    ids = _train(api.settings)
    api.settings.max_scope_items = 5
    r = post_request(api, {"model": "digits-mlp", "scope": {"type": "samples", "sample_ids": ids[:6]}})
    assert r.status_code == 413 and "POST /v1/deletion-requests/bulk" in r.json()["detail"]
    assert _bulk(api, _ndjson("sample_id", ids[:6])).status_code == 202  # the same list as an upload
    api.settings.max_bulk_scope_items = 10
    r = _bulk(api, _ndjson("sample_id", ids[:11]))
    assert r.status_code == 413 and "the limit is 10" in r.json()["detail"]


def test_a_replayed_upload_is_answered_once_and_another_list_under_the_key_is_refused(api):
    ids = _train(api.settings)
    first = _bulk(api, _ndjson("sample_id", ids[:20]), idem="revocation-1")
    again = _bulk(api, _ndjson("sample_id", ids[:20]), idem="revocation-1")
    assert first.status_code == again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = _bulk(api, _ndjson("sample_id", ids[20:40]), idem="revocation-1")
    assert other.status_code == 422 and "different request body" in other.json()["detail"]


def test_a_bulk_request_is_served_by_one_job_that_forgets_every_listed_sample(api):
    ids = _train(api.settings)[:300]
    rid = _bulk(api, _ndjson("sample_id", ids), method="retrain").json()["id"]
    settings = api.settings
    with session_scope(settings.resolved_database_url) as s:
        (job_id,) = coalesce(s, settings, force=True)
    assert run_job(settings, job_id, worker="w-test").status == "done"
    r = api.get(f"/v1/deletion-requests/{rid}", headers={"X-API-Key": api.keys["a"]}).json()
    assert r["status"] == "completed" and len(r["jobs"]) == 1
    version = api.get("/v1/models/digits-mlp/versions", headers={"X-API-Key": api.keys["a"]}).json()[-1]
    assert version["id"] == r["targets"][0]["version_id"]
