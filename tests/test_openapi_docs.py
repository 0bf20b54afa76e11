"""The API reference an operator or integrator reads: /docs works offline, every operation, parameter and
field is described, Idempotency-Key is documented as required, and `scope` is a union discriminated by
`type` while intake accepts and refuses exactly what it did."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.conftest import post_request
from unlearn.intake import DeletionRequestIn


@pytest.fixture()
def spec(settings):
    return TestClient(create_app(settings)).get("/openapi.json").json()


def _operations(spec):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            yield f"{method.upper()} {path}", op


def _undescribed_properties(schema, where, found):
    for name, prop in schema.get("properties", {}).items():
        if not prop.get("description"):
            found.append(f"{where}.{name}")
        _undescribed_properties(prop, f"{where}.{name}", found)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            _undescribed_properties(schema[key], f"{where}[]", found)
    return found


def test_every_operation_parameter_and_field_is_described(spec):
    ops = dict(_operations(spec))
    assert len(ops) >= 26
    assert [name for name, op in ops.items() if not op.get("summary") or not op.get("description")] == []
    assert [f"{name} {p['name']}" for name, op in ops.items() for p in op.get("parameters", [])
            if not p.get("description")] == []
    found: list[str] = []
    for name, schema in spec["components"]["schemas"].items():
        _undescribed_properties(schema, name, found)
    assert found == []
    assert len(spec["components"]["schemas"]) >= 25


def test_idempotency_key_is_documented_as_required_and_still_answers_400_without_it(spec, api):
    (header,) = [p for p in spec["paths"]["/v1/deletion-requests"]["post"]["parameters"] if p["in"] == "header"]
    assert header["name"] == "Idempotency-Key" and header["required"] is True
    assert header["schema"]["maxLength"] == 255 and header["example"]
    resp = api.post("/v1/deletion-requests", headers={"X-API-Key": api.keys["a"]},
                    json={"model": "digits-mlp", "scope": {"type": "subject", "subject": "subject-0001"}})
    assert resp.status_code == 400 and resp.json()["title"] == "Missing Idempotency-Key"


REQUIRED_BY_TYPE = {"subject": "subject", "samples": "sample_ids", "class": "label", "concept": "concept"}


def test_scope_is_a_union_discriminated_by_type(spec):
    schemas = spec["components"]["schemas"]
    body = schemas["DeletionRequestIn"]
    assert body["properties"]["scope"]["$ref"] == "#/components/schemas/ScopeIn"
    scope = schemas["ScopeIn"]
    assert scope["discriminator"]["propertyName"] == "type"
    mapping = scope["discriminator"]["mapping"]
    assert set(mapping) == set(REQUIRED_BY_TYPE)
    assert sorted(m["$ref"] for m in scope["oneOf"]) == sorted(mapping.values())
    for scope_type, field in REQUIRED_BY_TYPE.items():
        member = schemas[mapping[scope_type].rsplit("/", 1)[1]]
        assert member["properties"]["type"]["const"] == scope_type
        assert set(member["required"]) == {"type", field}
        assert member["properties"][field]["examples"]


def test_the_documented_examples_are_valid_requests(spec):
    examples = spec["paths"]["/v1/deletion-requests"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert {e["value"]["scope"]["type"] for e in examples.values()} == set(REQUIRED_BY_TYPE)
    for example in examples.values():
        DeletionRequestIn.model_validate(example["value"])


# Bodies intake accepted and refused before scope was documented as a union, with the same 422 details:
# validation is still the flat model's, so nothing a client sends changes meaning.
ACCEPTED = [
    {"type": "subject", "subject": "subject-0001"},
    {"type": "subject", "subject": "subject-0001", "labels_known": False},
    {"type": "samples", "sample_ids": ["<a training sample>"], "label": 3},  # another type's field: ignored
    {"type": "class", "label": 3, "concept": "digit-3"},
    {"type": "concept", "concept": "digit-3"},
]
REFUSED = [
    ({"type": "samples"}, "scope: Value error, scope type 'samples' needs a non-empty 'sample_ids'"),
    ({"type": "samples", "sample_ids": []}, "scope: Value error, scope type 'samples' needs a non-empty 'sample_ids'"),
    ({"type": "class"}, "scope: Value error, scope type 'class' needs a non-empty 'label'"),
    ({"type": "subject", "subject": ""}, "scope.subject: String should have at least 1 character"),
    ({"type": "person", "subject": "x"},
     "scope.type: Input should be 'subject', 'samples', 'class' or 'concept'"),
    ({"subject": "x"}, "scope.type: Field required"),
    ({"type": "subject", "subject": "x", "colour": "red"}, "scope.colour: Extra inputs are not permitted"),
    ({"type": "class", "label": -1}, "scope.label: Input should be greater than or equal to 0"),
]


@pytest.mark.parametrize("scope", ACCEPTED, ids=lambda s: s["type"])
def test_scopes_accepted_before_are_accepted(api, scope):
    if scope["type"] == "samples":
        from sqlmodel import select

        from unlearn.store.db import session_scope
        from unlearn.store.models import TrainingRecord

        with session_scope(api.settings.resolved_database_url) as s:
            sample = s.exec(select(TrainingRecord.sample_id).where(TrainingRecord.split == "train")).first()
        scope = {**scope, "sample_ids": [sample]}
    resp = post_request(api, {"model": "digits-mlp", "scope": scope})
    assert resp.status_code == 202, resp.text


@pytest.mark.parametrize(("scope", "detail"), REFUSED, ids=[d for _, d in REFUSED])
def test_scopes_refused_before_are_refused_with_the_same_detail(api, scope, detail):
    resp = post_request(api, {"model": "digits-mlp", "scope": scope})
    assert resp.status_code == 422 and resp.json()["detail"] == detail


def test_the_reference_page_loads_nothing_from_outside(settings):
    client = TestClient(create_app(settings))
    page = client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
    assert urls and all(u.startswith("/") for u in urls), urls
    for url in urls:
        if url.startswith("/docs/static/"):
            asset = client.get(url)
            assert asset.status_code == 200 and len(asset.content) > 10_000
    assert client.get("/docs/static/..%2F..%2Fconsts.py").status_code == 404
