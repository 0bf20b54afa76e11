"""The operator dashboard: a small page and its assets, shipped in the package (no CDN), and the
login that turns an operator's API key into an HttpOnly, SameSite=Strict session cookie.

The page itself is static; it reads and acts through the JSON API with that cookie.

No `from __future__ import annotations`: FastAPI reads the dependencies from live annotations.
"""

import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sqlmodel import Session

from api.auth import COOKIE, Principal, authenticate
from api.context import ApiContext
from api.problems import ERROR_RESPONSES, ProblemError

STATIC = Path(__file__).parent / "static"
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


class LoginIn(BaseModel):
    api_key: str = Field(min_length=1, max_length=256)


class SessionOut(BaseModel):
    tenant: str
    role: str


def add_dashboard_routes(app: FastAPI, ctx: ApiContext) -> None:
    def get(path: str, **kw: Any) -> Any:
        return app.get(path, responses=ERROR_RESPONSES, tags=["dashboard"], **kw)

    def post(path: str, **kw: Any) -> Any:
        return app.post(path, responses=ERROR_RESPONSES, tags=["dashboard"], **kw)

    Db = Annotated[Session, Depends(ctx.db)]

    @get("/dashboard", response_class=FileResponse, include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=SECURITY_HEADERS)

    @get("/dashboard/static/{asset}", response_class=FileResponse, include_in_schema=False)
    def static_asset(asset: str) -> FileResponse:
        if not _ASSET.match(asset) or not (STATIC / asset).is_file():
            raise ProblemError(404, "Not Found", f"no dashboard asset {asset!r}")
        return FileResponse(STATIC / asset, media_type=_MEDIA[asset.rsplit(".", 1)[1]], headers=SECURITY_HEADERS)

    @post("/dashboard/login", response_model=SessionOut, operation_id="dashboardLogin")
    def login(body: LoginIn, request: Request, response: Response, session: Db) -> SessionOut:
        p = authenticate(session, request, body.api_key)
        if not p.is_operator:
            raise ProblemError(403, "Forbidden", "the dashboard is for operators: this key is a submitter's")
        response.set_cookie(COOKIE, body.api_key, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https", max_age=12 * 3600)
        return SessionOut(tenant=p.tenant, role=p.role)

    @post("/dashboard/logout", status_code=204, operation_id="dashboardLogout")
    def logout() -> Response:
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @get("/dashboard/session", response_model=SessionOut, operation_id="dashboardSession")
    def whoami(p: Annotated[Principal, Depends(ctx.principal)]) -> SessionOut:
        return SessionOut(tenant=p.tenant, role=p.role)

