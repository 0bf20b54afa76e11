import pytest
from sqlmodel import select

from tests.conftest import register
from unlearn import registry
from unlearn.store.db import session_scope
from unlearn.store.models import DeletionRequest, ModelVersion, RequestTarget, utcnow


def test_manifest_hashes_every_file_and_detects_tampering(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"abc")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.json").write_text("{}")
    sha = registry.write_manifest(tmp_path)
    assert len(sha) == 64 and registry.check_manifest(tmp_path) == []
    (tmp_path / "a.bin").write_bytes(b"abd")
    assert registry.check_manifest(tmp_path) == ["a.bin"]


@pytest.mark.parametrize("name", ["../etc", "a/b", "UPPER", "", ".hidden", "x" * 80])
def test_model_names_cannot_escape_the_artifact_root(tmp_path, name):
    with pytest.raises(registry.RegistryError):
        registry.artifact_dir(tmp_path, name, "v1")


def _candidate(s, settings, parent, forget, tmp_path, tag="a"):
    folder = tmp_path / f"cand-{tag}"
    folder.mkdir()
    (folder / "w.bin").write_bytes(tag.encode())
    return registry.register_version(s, parent=parent, method="retrain", params={}, folder=folder,
                                     forget_ids=forget, request_ids=["r1"], job_id="j1", method_info={},
                                     verdict={"verdict": "pass"})


def test_registration_is_idempotent_and_the_taint_rule_blocks_rollback(settings, zoo_dir, tmp_path):
    v1 = register(settings, zoo_dir)
    with session_scope(settings.resolved_database_url) as s:
        v1 = s.get(ModelVersion, v1.id)
        forget = ["digits-0000", "digits-0001"]
        v2 = _candidate(s, settings, v1, forget, tmp_path)
        again = _candidate(s, settings, v1, forget, tmp_path, tag="b")  # a redelivered job
        assert again.id == v2.id and v2.version == 2
        assert set(v2.excluded_ids) == set(forget)
        assert registry.move_alias(s, "digits-mlp", v2, expected=v1.id, actor="t", reason="promote")
        assert not registry.move_alias(s, "digits-mlp", v2, expected=v1.id, actor="t", reason="stale CAS")
        # Complete a request for those samples: v1 still holds them, so it is tainted.
        req = DeletionRequest(tenant="t", scope_type="samples", due_at=utcnow(), status="completed")
        s.add(req)
        s.flush()
        s.add(RequestTarget(request_id=req.id, model_name="digits-mlp", forget_ids=forget, status="done"))
        s.flush()
        assert registry.is_tainted(s, v1) and not registry.is_tainted(s, v2)
        assert registry.taint_stale_versions(s, "digits-mlp", actor="t") == [v1.id]
        with pytest.raises(registry.TaintedVersion):
            registry.rollback(s, "digits-mlp", v1.id, actor="op", reason="try")
        assert registry.champion(s, "digits-mlp").id == v2.id
        tainted = s.exec(select(ModelVersion).where(ModelVersion.tainted == True)).all()  # noqa: E712
        assert [v.id for v in tainted] == [v1.id] and tainted[0].status == "retired"
