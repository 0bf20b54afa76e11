"""The interactive API reference at /docs (Swagger UI), its files served from the installed
`fastapi-offline` package, never a CDN, so that it works on a closed network. No /redoc: ReDoc's page
loads its logo from the vendor's CDN whatever its options, and one reference is enough.

No `from __future__ import annotations`: FastAPI reads the dependencies from live annotations.
"""

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from api.problems import ProblemError

# The package's static folder only (its FastAPIOffline class is not used): Swagger UI 5, which reads OpenAPI 3.1.
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}
PREFIX = "/docs/static"
FAVICON = "/dashboard/static/favicon.svg"
router = APIRouter(include_in_schema=False)


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url=request.app.openapi_url, title=f"{request.app.title}: API reference",
                               swagger_js_url=f"{PREFIX}/swagger-ui-bundle.js",
                               swagger_css_url=f"{PREFIX}/swagger-ui.css", swagger_favicon_url=FAVICON)


@router.get(f"{PREFIX}/{{asset}}", response_class=FileResponse)
def docs_asset(asset: str) -> FileResponse:
    if asset not in ASSETS:
        raise ProblemError(404, "Not Found", f"no API reference asset {asset!r}")
    return FileResponse(ASSETS_DIR / asset, media_type=ASSETS[asset],
                        headers={"Cache-Control": "public, max-age=86400"})
