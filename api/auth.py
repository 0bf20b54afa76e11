"""API keys: stored hashed, one tenant and one role each.

Submitters create and read their own tenant's requests; operators read everything, cancel
and roll back. A key is sent as `X-API-Key: …` or `Authorization: Bearer …`, or by the
dashboard as the session cookie `unlearn_key` (HttpOnly, SameSite=Strict). A cookie-borne key
changes nothing without the header `X-Requested-With`, which no cross-site form can send.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

from fastapi import Request
from fastapi.security import APIKeyHeader
from limits import RateLimitItemPerMinute
from limits.errors import StorageError
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from sqlmodel import Session, select

from api.problems import ProblemError
from unlearn.identity import hash_secret, new_api_key
from unlearn.store.models import ApiKey

ROLES = ("submitter", "operator")
COOKIE = "unlearn_key"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
log = logging.getLogger(__name__)
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")


@dataclass(frozen=True)
class Principal:
    key_id: str
    tenant: str
    role: str

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    @property
    def actor(self) -> str:
        """How the audit log names this caller: `key:<key id>`."""
        return f"key:{self.key_id}"


def create_api_key(session: Session, tenant: str, role: str, label: str | None = None) -> str:
    """Store a new key's hash and return the key itself (shown once). `label` says who holds it (audit
    trails show it beside the key's tenant and role)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not tenant or len(tenant) > 64:
        raise ValueError("tenant must be 1 to 64 characters")
    if label is not None and not 1 <= len(label.strip()) <= 128:
        raise ValueError("label must be 1 to 128 characters")
    key = new_api_key()
    session.add(ApiKey(key_hash=hash_secret(key), tenant=tenant, role=role,
                       label=label.strip() if label is not None else None))
    return key


class KeyCache:
    """Recently seen keys, so that a burst of requests does not look its key up every time.
    A revoked key stops working within `ttl_s`."""

    def __init__(self, ttl_s: float = 30.0, size: int = 10_000) -> None:
        self.ttl_s, self.size = ttl_s, size
        self._items: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, key_hash: str) -> Principal | None:
        with self._lock:
            hit = self._items.get(key_hash)
        return hit[1] if hit and hit[0] > time.monotonic() else None

    def put(self, key_hash: str, principal: Principal) -> None:
        with self._lock:
            if len(self._items) >= self.size:
                self._items.clear()
            self._items[key_hash] = (time.monotonic() + self.ttl_s, principal)


def authenticate(session: Session, request: Request, header_key: str | None,
                 cache: KeyCache | None = None) -> Principal:
    key = header_key
    auth = request.headers.get("authorization", "")
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    if not key:
        key = request.cookies.get(COOKIE)
        if key and request.method not in SAFE_METHODS and not request.headers.get("x-requested-with"):
            raise ProblemError(403, "Forbidden", "a session cookie needs the X-Requested-With header on "
                               f"{request.method} requests")
    if not key:
        raise ProblemError(401, "Unauthorized", "an API key is required (X-API-Key header)",
                           headers={"WWW-Authenticate": "ApiKey"})
    key_hash = hash_secret(key)
    if cache is not None and (hit := cache.get(key_hash)) is not None:
        return hit
    row = session.exec(select(ApiKey).where(ApiKey.key_hash == key_hash)).first()
    if row is None or row.revoked:
        raise ProblemError(401, "Unauthorized", "unknown or revoked API key", headers={"WWW-Authenticate": "ApiKey"})
    principal = Principal(row.id, row.tenant, row.role)
    if cache is not None:
        cache.put(key_hash, principal)
    return principal


class RateLimiter:
    """A moving one-minute window per API key (the `limits` library). Kept in Redis when `storage_url` names
    one (the broker's, in production), so that N API processes together allow the limit, not N times it;
    in process memory otherwise. While Redis is away each process counts alone rather than refusing
    every request: the limit guards against floods, and intake must go on answering."""

    def __init__(self, per_minute: int, storage_url: str = "memory://") -> None:
        self.per_minute = per_minute
        self._item = RateLimitItemPerMinute(per_minute)
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared = None
        if not storage_url.startswith("memory://"):
            shared = storage_from_string(storage_url, key_prefix="unlearn-rate", wrap_exceptions=True,
                                         socket_timeout=1.0, socket_connect_timeout=1.0)
            self._shared = MovingWindowRateLimiter(shared)

    def _hit(self, limiter: MovingWindowRateLimiter, key_id: str) -> float | None:
        """None when this request is within the limit; else when the window next frees a place (epoch s)."""
        if limiter.hit(self._item, key_id):
            return None
        return limiter.get_window_stats(self._item, key_id).reset_time

    def check(self, key_id: str) -> None:
        try:
            reset_at = self._hit(self._shared or self._local, key_id)
        except StorageError as exc:
            log.warning("rate limit store unavailable, counting in this process: %s", exc)
            reset_at = self._hit(self._local, key_id)
        if reset_at is not None:
            retry = max(1, math.ceil(reset_at - time.time()))
            raise ProblemError(429, "Too Many Requests", f"rate limit of {self.per_minute} requests per "
                               "minute for this API key", headers={"Retry-After": str(retry)})
