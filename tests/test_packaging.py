"""What cannot run here (no Docker engine) is still checked for consistency."""

import re
import tomllib
from pathlib import Path

import yaml

from cli.main import build_parser
from unlearn.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_compose_file_is_consistent_with_the_cli_and_settings():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"api", "gpu-worker", "cpu-worker", "beat", "redis", "postgres", "minio", "bucket"} <= set(services)
    redis_cmd = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_cmd and "--maxmemory-policy noeviction" in redis_cmd
    parser = build_parser()
    fields = set(Settings.model_fields)
    ours = ("api", "gpu-worker", "cpu-worker", "beat")
    for name in ours:
        svc = services[name]
        assert svc["command"][0] == "unlearn"
        parser.parse_args(svc["command"][1:])  # a command the CLI does not know would exit here
        for var in svc["environment"]:
            assert var.startswith("UNLEARN_") and var.removeprefix("UNLEARN_").lower() in fields, var
        assert svc["environment"]["UNLEARN_ARTIFACT_URL"].startswith("s3://")
        Settings(**{k.removeprefix("UNLEARN_").lower(): v for k, v in svc["environment"].items()
                    if "${" not in v})  # every value the settings accept
    # No disk is shared: each service keeps its own data volume, a cache of the store.
    volumes = [v.split(":")[0] for name in ours for v in services[name]["volumes"]]
    assert len(volumes) == len(set(volumes)) == len(ours)
    # Each worker serves its own queues; the GPU worker reserves an NVIDIA device.
    queues = {name: services[name]["command"][services[name]["command"].index("--queues") + 1]
              for name in ("gpu-worker", "cpu-worker")}
    assert queues == {"gpu-worker": "gpu", "cpu-worker": "cpu"}
    (device,) = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and services["gpu-worker"]["environment"]["UNLEARN_DEVICE"] == "cuda"


def test_every_command_honours_the_same_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("UNLEARN_DATA_DIR", str(tmp_path))
    s = Settings()
    assert s.resolved_database_url == f"sqlite:///{(tmp_path / 'unlearn.db').resolve()}"
    assert s.resolved_artifact_root == tmp_path / "artifacts"
    monkeypatch.setenv("UNLEARN_ARTIFACT_ROOT", "/elsewhere")
    assert str(Settings().resolved_artifact_root) == "/elsewhere"


def test_torch_is_a_range_for_users_and_one_pinned_version_for_ci_and_the_image():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_dep = next(d for d in deps if re.match(r"torch\b", d))
    assert "==" not in torch_dep and ">=" in torch_dep, torch_dep  # a library must not pin its users' torch
    pins = dict(re.findall(r"^([\w-]+)==(\S+)", (ROOT / "constraints.txt").read_text(), re.M))
    assert "torch" in pins
    assert "-c constraints.txt" in (ROOT / "Makefile").read_text()  # make install (and so CI) uses the pins
    assert f"torch=={pins['torch']}" in (ROOT / "Dockerfile").read_text()  # the image runs what CI tested
