"""Deletion certificates: a signed record of what was forgotten, where, how, and how it was checked.

(Stub: issue #7 fills in the Ed25519 signing; `issue_certificates` is already called by the job
runner in the same transaction that completes the requests.)
"""

from __future__ import annotations

from sqlmodel import Session

from unlearn.settings import Settings


def issue_certificates(session: Session, settings: Settings, request_ids: list[str]) -> None:
    return None
