"""Idempotent creation: a client that retries a POST with the same Idempotency-Key gets the first
answer again instead of a second resource.

A key is scoped to its tenant and bound to the body it was first sent with (by sha256 of the
body's canonical JSON); the first answer is stored in the same transaction as what it created.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from api.problems import ProblemError
from unlearn.store.models import IdempotencyRecord

Created = TypeVar("Created", bound=BaseModel)


def body_digest(body: BaseModel) -> str:
    """sha256 (hex) of the body's canonical JSON: the same fields in any order give the same digest."""
    return hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def create_once(session: Session, *, operation: str, tenant: str, key: str | None, body: BaseModel,
                create: Callable[[], Created], status_code: int) -> tuple[dict[str, Any], Created | None]:
    """Run `create` (which adds rows to `session` and returns the response body) at most once per
    (tenant, key), store its answer and commit.

    `operation` ("POST /v1/…") names the route in the 400 detail. Returns (stored answer as JSON,
    the new body) for a first call and (stored answer, None) for a replay of the same body.
    Raises ProblemError 400 without a key, 422 when the key was used with another body, and 409 when
    the same key's first call is committing on another connection; the session's owner rolls back.
    """
    if not key:
        raise ProblemError(400, "Missing Idempotency-Key", f"{operation} requires an Idempotency-Key header")
    digest = body_digest(body)
    prior = session.exec(select(IdempotencyRecord).where(IdempotencyRecord.tenant == tenant,
                                                         IdempotencyRecord.key == key)).first()
    if prior is not None:
        if prior.body_sha256 != digest:
            raise ProblemError(422, "Idempotency-Key reused",
                               "this Idempotency-Key was used with a different request body")
        return prior.response, None
    try:
        out = create()
        stored = json.loads(out.model_dump_json())
        session.add(IdempotencyRecord(tenant=tenant, key=key, body_sha256=digest, status_code=status_code,
                                      response=stored))
        session.commit()
    except IntegrityError:  # the same key raced in from another connection
        raise ProblemError(409, "Conflict", "a request with this Idempotency-Key is being processed") from None
    return stored, out
