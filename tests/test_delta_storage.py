"""A version is stored as what it changed against its parent: only the changed tensors are kept, the
composed folder is the written one byte for byte, a corrupt parent makes every child refused, chains
compose, a method that changed everything is stored whole, and the object store holds the delta alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import fsspec
import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import register
from tests.test_integrity import flip_bit
from unlearn import deltas, registry
from unlearn.artifacts import locate, locate_stored, use_mirror
from unlearn.manifests import COMPOSED, MANIFEST, build_manifest
from unlearn.objectstore import ArtifactStore
from unlearn.store.db import session_scope
from unlearn.store.models import ModelVersion

WEIGHTS = "model.safetensors"


def _candidate(parent: ModelVersion, folder: Path, change: dict[str, float]) -> dict[str, torch.Tensor]:
    """Write `parent`'s folder to `folder` with each named tensor shifted by its value; returns the tensors."""
    shutil.copytree(locate(parent.artifact_path), folder, ignore=shutil.ignore_patterns(MANIFEST))
    tensors = load_file(folder / WEIGHTS)
    for name, shift in change.items():
        tensors[name] = tensors[name] + shift
    save_file(tensors, str(folder / WEIGHTS))
    return {k: v.clone() for k, v in tensors.items()}


def _register(s, parent: ModelVersion, folder: Path, tag: str) -> ModelVersion:
    return registry.register_version(s, parent=parent, method="test", params={"tag": tag}, folder=folder,
                                     forget_ids=[], request_ids=[], job_id=f"job-{tag}", method_info={},
                                     verdict={"verdict": "pass"})


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].view(torch.uint8), b[k].view(torch.uint8)) for k in a)


def test_a_version_that_changed_one_layer_stores_that_layer_and_loads_whole(settings, zoo_dir, tmp_path):
    register(settings, zoo_dir)
    with session_scope(settings.resolved_database_url) as s:
        v1 = registry.champion(s, "digits-mlp")
        written = _candidate(v1, tmp_path / "v2", {"net.4.weight": 0.25})
        full = build_manifest(tmp_path / "v2")
        v2 = _register(s, v1, tmp_path / "v2", "head")
        full_bytes = (tmp_path / "v2" / COMPOSED / WEIGHTS).stat().st_size + (tmp_path / "v2" / "unlearn.json").stat().st_size
        registry.ensure_intact(s, v2, actor="test")
        assert v2.status == "candidate"

    stored = locate_stored(v2.artifact_path)
    assert sorted(p.name for p in stored.iterdir() if p.is_file()) == [
        "delta.json", MANIFEST, WEIGHTS + deltas.DELTA_SUFFIX, "unlearn.json"]
    assert list(load_file(stored / (WEIGHTS + deltas.DELTA_SUFFIX))) == ["net.4.weight"]  # the head alone
    head = 10 * 128 * 4
    assert head < v2.stored_bytes < head + 4096 and v2.stored_bytes < full_bytes / 10
    assert v2.stored_bytes == sum(p.stat().st_size for p in stored.iterdir() if p.is_file() and p.name != MANIFEST)
    assert v2.stored_sha256 == build_manifest(stored)["sha256"] != v2.weights_sha256
    assert v2.weights_sha256 == full["sha256"]  # the whole folder's hash, as a version stored whole has

    # A host that never composed it (or dropped the copy) rebuilds it, byte for byte.
    assert deltas.drop_composed(stored) > 100_000
    composed = locate(v2.artifact_path)
    assert composed == stored / COMPOSED
    assert build_manifest(composed) == full and _same(load_file(composed / WEIGHTS), written)


def test_a_corrupt_parent_makes_its_child_refused_and_both_quarantined(settings, zoo_dir, tmp_path):
    register(settings, zoo_dir)
    url = settings.resolved_database_url
    with session_scope(url) as s:
        v1 = registry.champion(s, "digits-mlp")
        _candidate(v1, tmp_path / "v2", {"net.4.bias": 1.0})
        v2 = _register(s, v1, tmp_path / "v2", "bias")
    flip_bit(Path(v1.artifact_path) / WEIGHTS)  # the child's own files and composed copy are untouched

    with session_scope(url) as s:
        with pytest.raises(registry.ArtifactIntegrityError, match="stored as a delta against version 1") as exc:
            registry.ensure_intact(s, s.get(ModelVersion, v2.id), actor="test")
        assert exc.value.version_id == v2.id
    with session_scope(url) as s:
        assert (s.get(ModelVersion, v1.id).status, s.get(ModelVersion, v2.id).status) == ("quarantined",) * 2
    # With no composed copy left, composing from the corrupt parent is refused as well.
    deltas.drop_composed(locate_stored(v2.artifact_path))
    with pytest.raises(deltas.DeltaIntegrityError, match="does not match"):
        locate(v2.artifact_path)
    assert not (locate_stored(v2.artifact_path) / COMPOSED).exists()
    (Path(v1.artifact_path) / WEIGHTS).write_bytes(b"cut short")  # not even a safetensors file
    with pytest.raises(deltas.DeltaIntegrityError, match="cannot be composed"):
        locate(v2.artifact_path)


def test_a_corrupt_stored_delta_is_refused_though_its_composed_copy_is_intact(settings, zoo_dir, tmp_path):
    register(settings, zoo_dir)
    with session_scope(settings.resolved_database_url) as s:
        v1 = registry.champion(s, "digits-mlp")
        _candidate(v1, tmp_path / "v2", {"net.2.weight": 0.5})
        v2 = _register(s, v1, tmp_path / "v2", "mid")
        flip_bit(tmp_path / "v2" / (WEIGHTS + deltas.DELTA_SUFFIX))
        with pytest.raises(registry.ArtifactIntegrityError, match="model.safetensors.delta of version 2"):
            registry.ensure_intact(s, v2, actor="test")
        assert v2.status == "quarantined" and s.get(ModelVersion, v1.id).status == "promoted"


def test_a_chain_of_three_deltas_composes_on_a_fresh_host(settings, zoo_dir, tmp_path):
    register(settings, zoo_dir)
    with session_scope(settings.resolved_database_url) as s:
        parent = registry.champion(s, "digits-mlp")
        chain = []
        for i, layer in enumerate(["net.4.weight", "net.2.bias", "net.0.bias"]):
            written = _candidate(parent, tmp_path / f"v{i + 2}", {layer: 0.125 * (i + 1)})
            parent = _register(s, parent, tmp_path / f"v{i + 2}", layer)
            chain.append((parent, layer, written))
        for version, layer, _ in chain:
            stored = locate_stored(version.artifact_path)
            assert list(load_file(stored / (WEIGHTS + deltas.DELTA_SUFFIX))) == [layer]
            assert deltas.read_delta(stored)["chain"] == chain.index((version, layer, _)) + 1
        for version, _, _ in chain:
            deltas.drop_composed(locate_stored(version.artifact_path))
        last, _, written = chain[-1]
        assert _same(load_file(locate(last.artifact_path) / WEIGHTS), written)
        assert all((locate_stored(v.artifact_path) / COMPOSED).is_dir() for v, _, _ in chain)  # each composed once
        registry.ensure_intact(s, last, actor="test")
        # materialised, the last one no longer needs its parents: it is stored whole with the same hash
        registry.materialise_version(s, last, actor="test")
        assert not deltas.is_delta(locate_stored(last.artifact_path))
        assert last.stored_sha256 == last.weights_sha256 == build_manifest(locate_stored(last.artifact_path))["sha256"]
        assert last.stored_bytes > 100_000
        shutil.rmtree(locate_stored(chain[1][0].artifact_path))  # its parent's folder gone: still intact
        registry.ensure_intact(s, last, actor="test")
        assert _same(load_file(locate(last.artifact_path) / WEIGHTS), written)


def test_a_method_that_changed_every_tensor_is_stored_whole(settings, zoo_dir, tmp_path):
    register(settings, zoo_dir)
    with session_scope(settings.resolved_database_url) as s:
        v1 = registry.champion(s, "digits-mlp")
        names = list(load_file(Path(v1.artifact_path) / WEIGHTS))
        _candidate(v1, tmp_path / "v2", dict.fromkeys(names, 0.01))
        v2 = _register(s, v1, tmp_path / "v2", "all")
        registry.ensure_intact(s, v2, actor="test")
    stored = locate_stored(v2.artifact_path)
    assert not deltas.is_delta(stored) and not (stored / COMPOSED).exists() and locate(v2.artifact_path) == stored
    assert v2.stored_sha256 == v2.weights_sha256
    assert v2.stored_bytes == sum(p.stat().st_size for p in stored.iterdir() if p.name != MANIFEST)


def test_the_object_store_holds_the_delta_alone_and_another_host_composes_it(settings, zoo_dir, tmp_path):
    url = f"memory://delta-{tmp_path.name}/artifacts"
    use_mirror(ArtifactStore(url, settings.resolved_artifact_root))
    try:
        register(settings, zoo_dir)
        with session_scope(settings.resolved_database_url) as s:
            v1 = registry.champion(s, "digits-mlp")
            folder = registry.artifact_dir(settings.resolved_artifact_root, "digits-mlp", "jobs", "j", "attempt-1")
            written = _candidate(v1, folder, {"net.4.weight": 0.5})
            v2 = _register(s, v1, folder, "store")
        assert v2.artifact_path == "digits-mlp/jobs/j/attempt-1"
        fs, base = fsspec.core.url_to_fs(url)
        kept = {Path(p).name: fs.size(p) for p in fs.find(f"{base}/{v2.artifact_path}")}
        assert sorted(kept) == ["delta.json", MANIFEST, WEIGHTS + deltas.DELTA_SUFFIX, "unlearn.json"]
        assert sum(v for k, v in kept.items() if k != MANIFEST) == v2.stored_bytes

        use_mirror(ArtifactStore(url, tmp_path / "host-b"))  # a host with nothing: parent and child fetched
        with session_scope(settings.resolved_database_url) as s:
            registry.ensure_intact(s, s.get(ModelVersion, v2.id), actor="host-b")
        composed = locate(v2.artifact_path)
        assert composed.is_relative_to(tmp_path / "host-b") and _same(load_file(composed / WEIGHTS), written)
        assert (tmp_path / "host-b" / "digits-mlp" / "v1" / WEIGHTS).is_file()
    finally:
        use_mirror(None)


def test_a_save_pretrained_folder_with_one_block_changed_is_stored_as_that_block(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32)
    model = GPT2LMHeadModel(config)
    parent, child = tmp_path / "parent", tmp_path / "child"
    model.save_pretrained(parent)  # header metadata {"format": "pt"}, tied lm_head left out
    (parent / "unlearn.json").write_text('{"family": "lm"}')
    from unlearn.manifests import write_manifest

    write_manifest(parent)
    with torch.no_grad():
        model.transformer.h[1].mlp.c_fc.weight.add_(0.5)
    model.save_pretrained(child)
    (child / "unlearn.json").write_text('{"family": "lm"}')
    full = write_manifest(child)
    stored = deltas.store_delta(child, base=parent, base_ref=str(parent))

    assert stored.delta and stored.sha256 == build_manifest(child)["sha256"] and full == build_manifest(
        child / COMPOSED)["sha256"]
    assert list(load_file(child / (WEIGHTS + deltas.DELTA_SUFFIX))) == ["transformer.h.1.mlp.c_fc.weight"]
    assert deltas.read_delta(child)["from_base"] == ["config.json", "generation_config.json"]
    deltas.drop_composed(child)
    composed = deltas.compose(child, Path)
    assert build_manifest(composed)["sha256"] == full  # byte for byte, the header's metadata included
    assert GPT2LMHeadModel.from_pretrained(composed).transformer.h[1].mlp.c_fc.weight.equal(
        model.transformer.h[1].mlp.c_fc.weight)


def test_the_api_shows_both_hashes_and_the_bytes_kept(api, tmp_path):
    with session_scope(api.settings.resolved_database_url) as s:
        v1 = registry.champion(s, "digits-mlp")
        _candidate(v1, tmp_path / "v2", {"net.4.bias": 2.0})
        v2 = _register(s, v1, tmp_path / "v2", "api")
    versions = api.get("/v1/models/digits-mlp/versions", headers={"X-API-Key": api.keys["op"]}).json()
    first, second = versions
    assert first["stored_sha256"] == first["weights_sha256"] and first["stored_bytes"] > 100_000
    assert (second["weights_sha256"], second["stored_sha256"]) == (v2.weights_sha256, v2.stored_sha256)
    assert second["stored_sha256"] != second["weights_sha256"] and second["stored_bytes"] < 2_000
