"""Deletion certificates and the public key that verifies them.

No `from __future__ import annotations`: FastAPI reads the dependencies from live annotations.
"""

from typing import Any

from fastapi import APIRouter

from api.deps import CallerDep, SessionDep, SettingsDep
from api.lookups import visible_request
from api.problems import ERROR_RESPONSES, ProblemError
from api.schemas import CertificateOut, PublicKeyOut
from unlearn import certificates
from unlearn.intake import Text
from unlearn.store.models import Certificate

router = APIRouter(responses=ERROR_RESPONSES, tags=["certificates"])


@router.get("/v1/keys", response_model=PublicKeyOut, operation_id="publicKey")
def public_key(settings: SettingsDep) -> PublicKeyOut:
    pem = certificates.public_key_pem(settings)
    return PublicKeyOut(algorithm=certificates.ALGORITHM, key_id=certificates.key_id(pem), public_key_pem=pem)


@router.get("/v1/deletion-requests/{request_id}/certificate", response_model=CertificateOut,
            operation_id="getCertificate")
def get_certificate(request_id: Text, session: SessionDep, caller: CallerDep) -> Any:
    r = visible_request(session, caller, request_id)
    row = session.get(Certificate, r.id)
    if row is None:
        raise ProblemError(404, "Not Found", f"no certificate for request {r.id}: it is {r.status}; "
                           "certificates are issued when a request completes")
    return certificates.document(row)
