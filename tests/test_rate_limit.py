"""The rate limit holds across API processes: with a broker, it is counted in its Redis."""

from __future__ import annotations

import signal

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.procs import RedisServer

LIMIT = 5


@pytest.fixture()
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop(signal.SIGKILL)


def _apps(api, redis_server, n: int) -> list[TestClient]:
    """`n` API apps of one deployment (as `uvicorn --workers n` runs them), each with its own state."""
    settings = api.settings.model_copy(update={"rate_limit_per_minute": LIMIT, "broker_url": redis_server.url})
    return [TestClient(create_app(settings)) for _ in range(n)]


def test_two_api_processes_together_allow_only_the_limit(api, redis_server):
    apps = _apps(api, redis_server, 2)
    h = {"X-API-Key": api.keys["a"]}
    codes = [apps[i % 2].get("/v1/models", headers=h).status_code for i in range(3 * LIMIT)]
    assert codes.count(200) == LIMIT and codes[:LIMIT] == [200] * LIMIT
    refused = apps[1].get("/v1/models", headers=h)
    assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert apps[0].get("/v1/models", headers={"X-API-Key": api.keys["b"]}).status_code == 200  # per key


def test_with_redis_away_each_process_still_answers_and_limits_alone(api, redis_server):
    (app,) = _apps(api, redis_server, 1)
    redis_server.stop(signal.SIGKILL)
    h = {"X-API-Key": api.keys["a"]}
    codes = [app.get("/v1/models", headers=h).status_code for _ in range(LIMIT + 1)]
    assert codes == [200] * LIMIT + [429]
