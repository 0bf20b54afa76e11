"""Idempotent creation: a client that retries a POST with the same Idempotency-Key gets the first
answer again instead of a second resource.

A key is scoped to its tenant and bound to the body it was first sent with (by sha256 of the
body's canonical JSON); the first answer is stored in the same transaction as what it created.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import Table, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from api.problems import ProblemError
from unlearn.store.models import IdempotencyRecord, utcnow

Created = TypeVar("Created", bound=BaseModel)


def body_digest(body: BaseModel) -> str:
    """sha256 (hex) of the body's canonical JSON: the same fields in any order give the same digest."""
    return hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def require_key(operation: str, key: str | None) -> None:
    """Raise ProblemError 400 unless an Idempotency-Key was sent; `operation` ("POST /v1/…") names the route."""
    if not key:
        raise ProblemError(400, "Missing Idempotency-Key", f"{operation} requires an Idempotency-Key header")


def create_once(session: Session, *, operation: str, tenant: str, key: str | None, body: BaseModel,
                create: Callable[[], Created], status_code: int) -> tuple[dict[str, Any], Created | None]:
    """Run `create` (which adds rows to `session` and returns the response body) at most once per
    (tenant, key), store its answer and commit.

    `operation` ("POST /v1/…") names the route in the 400 detail. Returns (stored answer as JSON,
    the new body) for a first call and (stored answer, None) for a replay of the same body.
    Raises ProblemError 400 without a key, 422 when the key was used with another body, and 409 when
    the same key's first call is committing on another connection; the session's owner rolls back.
    """
    require_key(operation, key)
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


Row = tuple[Table, dict[str, Any]]


@dataclass
class Creation(Generic[Created]):
    """One idempotent creation for `create_many`: the caller's tenant, Idempotency-Key and body, and
    `create`, which returns the response body and the rows to insert for it, as (table, column values),
    parents first. `create` reads the session and writes nothing."""

    tenant: str
    key: str
    body: BaseModel
    create: Callable[[], tuple[Created, list[Row]]]


Outcome = tuple[dict[str, Any], Created | None] | Exception


def insert_rows(session: Session, rows: Sequence[Row]) -> None:
    """One multi-row INSERT per table, tables in the order they first appear (parents before children)."""
    by_table: dict[Table, list[dict[str, Any]]] = {}
    for table, values in rows:
        by_table.setdefault(table, []).append(values)
    for table, values in by_table.items():
        session.execute(insert(table), values)


def create_many(session: Session, *, operation: str, items: Sequence[Creation[Created]], status_code: int
                ) -> list[Outcome]:
    """`create_once` for a batch, in one transaction: one read of the keys already used, the rows of every
    first call inserted together, and one COMMIT. Returns, per item, what `create_once` would return, or
    the exception it would raise (ProblemError, or whatever `create` raised: that item alone fails).

    The batch falls back to `create_once` item by item, each in its own transaction and so with its exact
    answers, for a key sent twice within the batch (the second is then a replay, or a 422) and when the
    COMMIT fails on a unique key: the same key came in meanwhile on another connection, and alone its item
    is a replay (or a 422) once that one committed, a 409 while it is still committing; the others of the
    batch are created as they would have been.
    """
    outcomes: list[Outcome | None] = [None] * len(items)
    prior = {(r.tenant, r.key): r for r in session.exec(select(IdempotencyRecord).where(
        col(IdempotencyRecord.key).in_(sorted({it.key for it in items})))).all()}
    first: set[tuple[str, str]] = set()
    alone: list[int] = []  # answered one by one, after the batch
    rows: dict[int, list[Row]] = {}
    for i, it in enumerate(items):
        digest = body_digest(it.body)
        found = prior.get((it.tenant, it.key))
        if found is not None:
            outcomes[i] = (found.response, None) if found.body_sha256 == digest else ProblemError(
                422, "Idempotency-Key reused", "this Idempotency-Key was used with a different request body")
            continue
        if (it.tenant, it.key) in first:
            alone.append(i)
            continue
        first.add((it.tenant, it.key))
        try:
            out, new_rows = it.create()
        except Exception as exc:  # noqa: BLE001 - this item's answer; the batch goes on
            outcomes[i] = exc
            continue
        stored = json.loads(out.model_dump_json())
        rows[i] = [*new_rows, (IdempotencyRecord.__table__, {
            "tenant": it.tenant, "key": it.key, "body_sha256": digest, "status_code": status_code,
            "response": stored, "created_at": utcnow()})]
        outcomes[i] = (stored, out)
    try:
        insert_rows(session, [row for i in sorted(rows) for row in rows[i]])
        session.commit()
    except IntegrityError:
        session.rollback()
        alone = sorted(alone + list(rows))
    for i in alone:
        it = items[i]

        def create(i: int = i, it: Creation[Created] = it) -> Created:
            out, new_rows = (outcomes[i][1], rows[i][:-1]) if i in rows else it.create()  # type: ignore[index]
            insert_rows(session, new_rows)
            return out

        try:
            outcomes[i] = create_once(session, operation=operation, tenant=it.tenant, key=it.key, body=it.body,
                                      create=create, status_code=status_code)
        except Exception as exc:  # noqa: BLE001
            session.rollback()
            outcomes[i] = exc
    return outcomes  # type: ignore[return-value]
