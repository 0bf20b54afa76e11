"""One settings object for every command: environment variables with the `UNLEARN_` prefix."""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "UNLEARN_"
# Subject ids are stored as salted hashes; with a salt everyone knows, anyone can hash a name and find it.
DEFAULT_SUBJECT_SALT = "unlearn-default-salt"

log = logging.getLogger(__name__)


class SettingsError(ValueError):
    """Settings that make no sense (a deadline before the request, a negative lease): one line naming
    each offending variable, so that a process refuses to start instead of running with them."""


def _one_line(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        name = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{ENV_PREFIX}{name.upper()}={err['input']}: {msg}" if name else msg)
    return "invalid settings: " + "; ".join(parts)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    def __init__(self, **values: object) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(_one_line(exc)) from None

    data_dir: Path = Path(".unlearn")
    database_url: str | None = None  # default: sqlite under data_dir
    artifact_root: Path | None = None  # default: data_dir / "artifacts" (with a store: this host's local copies)
    # Where versions live for every host: an object store URL (`s3://bucket/prefix`, any fsspec URL), or a
    # local path (the embedded default: the artifact root itself). With a store, each host keeps its own
    # artifact root as a cache of it (unlearn.objectstore).
    artifact_url: str | None = None
    # fsspec options of the store (JSON): for S3 `{"endpoint_url": …, "key": …, "secret": …}`; unset,
    # s3fs reads the AWS_* variables and ~/.aws.
    artifact_storage_options: dict[str, object] = Field(default_factory=dict)
    artifact_cache_bytes: int | None = Field(None, ge=0)  # most bytes of fetched versions a host keeps
    # "memory://" runs an in-process worker (embedded mode); "redis://…" is production.
    broker_url: str = "memory://"
    result_backend: str | None = None

    device: str = "cpu"
    # Methods from outside the package: {"name": "module:attribute"} (JSON in UNLEARN_EXTRA_METHODS).
    extra_methods: dict[str, str] = Field(default_factory=dict)
    # Tiny models run fastest on one thread; several threads per process thrash a small machine.
    torch_threads: int = Field(1, ge=1)
    seed: int = 0

    # Request workflow
    # GDPR art. 12(3): one month, extendable by two further months where necessary. The request
    # API's own `due_days` stops at 90 as well.
    due_days: int = Field(30, ge=1, le=90)
    at_risk_days: int = Field(5, ge=0)  # below due_days, or every request is at risk on arrival
    max_extension_days: int = Field(60, ge=0, le=365)  # in total over a request's life, from its first due date
    # Requests held for operator approval before any work: scope types ("class", "concept",
    # "subject", "samples") and/or kinds ("corrective"). Empty: none.
    review_required_for: list[str] = Field(default_factory=list)
    batch_window_s: float = Field(2.0, ge=0)  # pending requests for one model wait this long to be coalesced
    max_batch_requests: int = Field(1000, ge=1)
    max_attempts: int = Field(3, ge=1)
    lease_s: float = Field(900.0, gt=0)  # a claimed job belongs to its worker this long
    # Wall seconds a job's chain of methods may spend before an operator must decide (a model's own
    # `cost_budget_s` overrides it): the next method starts only if the time spent plus its expected
    # cost fits. Two hours: the people LM's exact retrain (460 s on a 2-core CPU) fits after whp and NPO.
    chain_budget_s: float = Field(7200.0, gt=0)
    reconcile_interval_s: float = Field(30.0, gt=0)
    requeue_after_s: float = Field(600.0, gt=0)  # a queued job not started this long after its enqueue is sent again
    compliance_interval_s: float = Field(3600.0, gt=0)
    heartbeat_interval_s: float = Field(5.0, gt=0)  # workers report this often; silent for 3 intervals: not alive
    # A clean shutdown (SIGTERM) lets a running job finish this long, then hands it back to the queue with
    # its lease released. Below the orchestrator's own grace (Docker's default is 10 s) before SIGKILL.
    shutdown_grace_s: float = Field(8.0, ge=0)

    # Deletion certificates: the service's Ed25519 key (PEM, PKCS#8), created on first use.
    signing_key_path: Path | None = None  # default: data_dir / "keys" / "service_ed25519.pem"

    # Celery (long GPU jobs): visibility timeout must exceed the hard time limit.
    task_time_limit_s: int = Field(3600, gt=0)
    task_soft_time_limit_s: int = Field(3300, gt=0)
    visibility_timeout_s: int = Field(4000, gt=0)
    # How often workers sweep Redis for unacked messages past the visibility timeout (kombu's
    # default is roughly every 100 s).
    restore_interval_s: int = Field(30, gt=0)

    # API
    max_body_bytes: int = Field(256 * 1024, ge=1)
    max_scope_items: int = Field(10_000, ge=1)  # sample ids inline in a request's JSON
    # A scope sent as an upload (POST /v1/deletion-requests/bulk): sample ids or subjects, NDJSON or Parquet.
    max_bulk_scope_items: int = Field(1_000_000, ge=1)
    max_bulk_body_bytes: int = Field(128 * 1024 * 1024, ge=1)
    # Folders on the service's machines that POST /v1/models may read a team's model, records, recipe base,
    # reference or judge from (a shared volume); none by default, so that an API key cannot make the service
    # copy an arbitrary folder. The CLI (`unlearn model register`) runs as its user and reads any path.
    registration_roots: list[Path] = Field(default_factory=list)
    # One uploaded batch of a team's training records (POST /v1/models/{name}/records): NDJSON or Parquet.
    max_records_batch_bytes: int = Field(64 * 1024 * 1024, ge=1)
    rate_limit_per_minute: int = Field(6000, ge=1)
    subject_salt: str = DEFAULT_SUBJECT_SALT  # production: set a secret per deployment (check_subject_salt)

    # Verifier gates that override the verifier's own defaults (which depend on family and method)
    # for every model; unset, each verifier uses its defaults. Per-model overrides live in Model.thresholds.
    gate_forget_acc_margin: float | None = None  # candidate forget accuracy <= retrain's + margin
    gate_test_acc_margin: float | None = None  # candidate test accuracy >= retrain's - margin
    gate_mia_rel_tol: float | None = Field(None, description="|AUC - AUC_retrain| / AUC_retrain at most this")

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.at_risk_days >= self.due_days:
            raise ValueError(f"{ENV_PREFIX}AT_RISK_DAYS={self.at_risk_days} must be below "
                             f"{ENV_PREFIX}DUE_DAYS={self.due_days}")
        if self.task_soft_time_limit_s > self.task_time_limit_s:  # the soft limit would never fire
            raise ValueError(f"{ENV_PREFIX}TASK_SOFT_TIME_LIMIT_S={self.task_soft_time_limit_s} must not exceed "
                             f"{ENV_PREFIX}TASK_TIME_LIMIT_S={self.task_time_limit_s}")
        return self

    def check_subject_salt(self) -> None:
        """At a service process's start: the default salt is refused in production (a broker that is not
        in memory) and warned about otherwise. Not a validator: tools and tests build production settings
        without starting anything."""
        if self.subject_salt != DEFAULT_SUBJECT_SALT:
            return
        if not self.embedded:
            raise SettingsError(f"{ENV_PREFIX}SUBJECT_SALT is not set: refusing to start in production (broker "
                                f"{self.broker_url.split('://')[0]}://) with the default subject salt, which "
                                "lets anyone recover subject ids from their hashes; set it to a secret")
        log.warning("%sSUBJECT_SALT is not set: subject ids are hashed with the public default salt. Set it to "
                    "a secret before serving real requests (production refuses to start without it).", ENV_PREFIX)

    @property
    def artifact_store_url(self) -> str | None:
        """The object store's URL, or None when artifacts live on a local path (`artifact_url` unset, a
        plain path or `file://`)."""
        url = self.artifact_url
        if not url or "://" not in url or url.startswith("file://"):
            return None
        return url

    @property
    def resolved_artifact_root(self) -> Path:
        if self.artifact_url and self.artifact_store_url is None and not self.artifact_root:
            return Path(self.artifact_url.removeprefix("file://"))
        return Path(self.artifact_root or self.data_dir / "artifacts")

    def install_artifact_store(self) -> None:
        """Make this process read and write versions through the object store of `artifact_url` (or, with
        none, on the local artifact root alone). Called once by each process's entry point."""
        from unlearn.artifacts import use_mirror
        from unlearn.objectstore import ArtifactStore

        url = self.artifact_store_url
        use_mirror(None if url is None else ArtifactStore(
            url, self.resolved_artifact_root, storage_options=self.artifact_storage_options,
            cache_bytes=self.artifact_cache_bytes))

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
