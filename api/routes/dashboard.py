"""The operator dashboard: a small page and its assets, shipped in the package (no CDN), and the
login that turns an operator's API key into an HttpOnly, SameSite=Strict session cookie.

The page itself is static; it reads and acts through the JSON API with that cookie.

No `from __future__ import annotations`: FastAPI reads the dependencies from live annotations.
"""

import re
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse

from api.auth import COOKIE, authenticate
from api.deps import CallerDep, SessionDep
from api.problems import ERROR_RESPONSES, ProblemError
from api.schemas import LoginIn, SessionOut

STATIC = Path(__file__).resolve().parents[1] / "static"
_ASSET = re.compile(r"^[a-z0-9_-]+\.(css|js|svg)$")
_MEDIA = {"css": "text/css", "js": "text/javascript", "svg": "image/svg+xml"}
# Only this origin's scripts and styles; plots and icons are same-origin images.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

router = APIRouter(prefix="/dashboard", responses=ERROR_RESPONSES, tags=["dashboard"])


@router.get("", response_class=FileResponse, include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=SECURITY_HEADERS)


@router.get("/static/{asset}", response_class=FileResponse, include_in_schema=False)
def static_asset(asset: str) -> FileResponse:
    if not _ASSET.match(asset) or not (STATIC / asset).is_file():
        raise ProblemError(404, "Not Found", f"no dashboard asset {asset!r}")
    return FileResponse(STATIC / asset, media_type=_MEDIA[asset.rsplit(".", 1)[1]], headers=SECURITY_HEADERS)


@router.post("/login", response_model=SessionOut, operation_id="dashboardLogin")
def login(body: LoginIn, request: Request, response: Response, session: SessionDep) -> SessionOut:
    caller = authenticate(session, request, body.api_key)
    if not caller.is_operator:
        raise ProblemError(403, "Forbidden", "the dashboard is for operators: this key is a submitter's")
    response.set_cookie(COOKIE, body.api_key, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https", max_age=12 * 3600)
    return SessionOut(tenant=caller.tenant, role=caller.role)


@router.post("/logout", status_code=204, operation_id="dashboardLogout")
def logout() -> Response:
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/session", response_model=SessionOut, operation_id="dashboardSession")
def whoami(caller: CallerDep) -> SessionOut:
    return SessionOut(tenant=caller.tenant, role=caller.role)
