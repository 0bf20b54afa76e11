"""One model's fault stays that model's: what counts as such a fault, and how one model's step of a
batch run (batching, a compliance sweep) is undone alone when it raises."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from unlearn.store.transitions import Conflict


def model_fault(exc: BaseException) -> bool:
    """Whether `exc` is a fault of one model (a missing artifact, an unknown family, unreadable metadata),
    to be isolated to it, rather than of the database or of a race, which the whole run retries."""
    return isinstance(exc, Exception) and not isinstance(exc, (Conflict, SQLAlchemyError))


@contextmanager
def model_savepoint(session: Session) -> Iterator[None]:
    """Undo one model's step, and only it, when the step raises: a savepoint (`begin_nested`).

    On SQLite before the transaction's first write, a savepoint would open a read snapshot held for
    the whole step, and a long step (a compliance check runs the verifier) would then fail its first
    write with "database is locked" once any other connection had written meanwhile. Nothing written
    precedes the step there, so rolling the whole transaction back undoes exactly the step."""
    session.flush()
    conn = session.connection()
    if conn.dialect.name == "sqlite" and not conn.connection.dbapi_connection.in_transaction:
        try:
            yield
        except BaseException:
            session.rollback()
            raise
        return
    with session.begin_nested():
        yield


__all__ = ["model_fault", "model_savepoint"]
