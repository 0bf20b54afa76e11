"""One settings object for every command: environment variables with the `UNLEARN_` prefix."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="UNLEARN_", extra="ignore")

    data_dir: Path = Path(".unlearn")
    database_url: str | None = None  # default: sqlite under data_dir
    artifact_root: Path | None = None  # default: data_dir / "artifacts"
    # "memory://" runs an in-process worker (embedded mode); "redis://…" is production.
    broker_url: str = "memory://"
    result_backend: str | None = None

    device: str = "cpu"
    # Methods from outside the package: {"name": "module:attribute"} (JSON in UNLEARN_EXTRA_METHODS).
    extra_methods: dict[str, str] = Field(default_factory=dict)
    # Tiny models run fastest on one thread; several threads per process thrash a small machine.
    torch_threads: int = 1
    seed: int = 0

    # Request workflow
    due_days: int = 30
    at_risk_days: int = 5
    # Requests held for operator approval before any work: scope types ("class", "concept",
    # "subject", "samples") and/or kinds ("corrective"). Empty: none.
    review_required_for: list[str] = Field(default_factory=list)
    batch_window_s: float = 2.0  # pending requests for one model wait this long to be coalesced
    max_batch_requests: int = 1000
    max_attempts: int = 3
    lease_s: float = 900.0  # a claimed job belongs to its worker this long
    reconcile_interval_s: float = 30.0
    requeue_after_s: float = 600.0  # a queued job not started this long after its enqueue is sent again
    compliance_interval_s: float = 3600.0
    heartbeat_interval_s: float = 5.0  # workers report this often; silent for 3 intervals: not alive

    # Deletion certificates: the service's Ed25519 key (PEM, PKCS#8), created on first use.
    signing_key_path: Path | None = None  # default: data_dir / "keys" / "service_ed25519.pem"

    # Celery (long GPU jobs): visibility timeout must exceed the hard time limit.
    task_time_limit_s: int = 3600
    task_soft_time_limit_s: int = 3300
    visibility_timeout_s: int = 4000
    # How often workers sweep Redis for unacked messages past the visibility timeout (kombu's
    # default is roughly every 100 s).
    restore_interval_s: int = 30

    # API
    max_body_bytes: int = 256 * 1024
    max_scope_items: int = 10_000
    rate_limit_per_minute: int = 6000
    subject_salt: str = "unlearn-default-salt"  # production: set a secret per deployment

    # Verifier gates that override the verifier's own defaults (which depend on family and method)
    # for every model; unset, each verifier uses its defaults. Per-model overrides live in Model.thresholds.
    gate_forget_acc_margin: float | None = None  # candidate forget accuracy <= retrain's + margin
    gate_test_acc_margin: float | None = None  # candidate test accuracy >= retrain's - margin
    gate_mia_rel_tol: float | None = Field(None, description="|AUC - AUC_retrain| / AUC_retrain at most this")

    @property
    def resolved_artifact_root(self) -> Path:
        return Path(self.artifact_root or self.data_dir / "artifacts")

    @property
    def resolved_signing_key_path(self) -> Path:
        return Path(self.signing_key_path or self.data_dir / "keys" / "service_ed25519.pem")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'unlearn.db').resolve()}"

    @property
    def zoo_dir(self) -> Path:
        return self.data_dir / "zoo"

    @property
    def embedded(self) -> bool:
        return self.broker_url.startswith("memory://")


@lru_cache
def get_settings() -> Settings:
    return Settings()
