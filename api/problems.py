"""RFC 9457 problem details for every error the API returns, and the one map from the library's
domain errors to HTTP statuses (routes let those errors propagate)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from unlearn.intake import IntakeError
from unlearn.operations import ExtensionLimit
from unlearn.registration import AlreadyRegistered, RegistrationError
from unlearn.registry import RegistryError, TaintedVersion, UnknownVersion
from unlearn.store.transitions import IllegalTransition

PROBLEM = "application/problem+json"


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (media type application/problem+json)."""
    type: str = Field(
        "about:blank", description="a URI naming the kind of problem (about:blank: the status says it)")
    title: str = Field(description="a short summary of the kind of problem", examples=["Not Found"])
    status: int = Field(description="the HTTP status", examples=[404])
    detail: str | None = Field(None, description="what went wrong in this case, in words",
                               examples=["no deletion request 'r-123'"])
    instance: str | None = Field(None, description="the request path that failed")


class ProblemError(Exception):
    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.headers, self.extra = status, title, detail, headers, extra


# Most specific first: the first entry the error is an instance of gives its status and title.
DOMAIN_ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    (TaintedVersion, 409, "Tainted version"),
    (UnknownVersion, 404, "Not Found"),
    (RegistryError, 409, "Conflict"),
    (AlreadyRegistered, 409, "Already registered"),
    (RegistrationError, 422, "Registration refused"),
    (IllegalTransition, 409, "Conflict"),  # a lost race (its subclass Conflict) included
    (ExtensionLimit, 409, "Extension limit reached"),
)


def domain_problem(exc: Exception, *, title: str | None = None, detail: str | None = None) -> ProblemError:
    """The problem a domain error answers with. An `IntakeError` carries its own status, title and
    detail; the others take theirs from `DOMAIN_ERRORS` and their message as the detail. `title` and
    `detail` replace the defaults where a route words the refusal its own way.
    Raises TypeError for an error that is not a domain error."""
    if isinstance(exc, IntakeError):
        status, default_title, default_detail = exc.status, exc.title, exc.detail
    else:
        found = next(((s, t) for kind, s, t in DOMAIN_ERRORS if isinstance(exc, kind)), None)
        if found is None:
            raise TypeError(f"{type(exc).__name__} is not a domain error")
        (status, default_title), default_detail = found, str(exc)
    return ProblemError(status, title or default_title, detail or default_detail)


def problem_response(request: Request, status: int, title: str, detail: str | None,
                     headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail,
            "instance": str(request.url.path), **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def install(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(request, exc.status, exc.title, exc.detail, exc.headers, **exc.extra)

    async def _domain(request: Request, exc: Exception) -> JSONResponse:
        problem = domain_problem(exc)
        return problem_response(request, problem.status, problem.title, problem.detail)

    for kind in (IntakeError, *(kind for kind, _status, _title in DOMAIN_ERRORS)):
        app.add_exception_handler(kind, _domain)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(request, 422, "Invalid request", _validation_detail(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(request, exc.status_code, _title(exc.status_code), str(exc.detail),
                                getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:  # never a bare 500 page
        return problem_response(request, 500, "Internal error", "the server could not complete this request")


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {  # routes whose body is data (NDJSON or Parquet)
    415: {"model": Problem, "content": {PROBLEM: {}}, "description": "Not NDJSON or Parquet"}}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {PROBLEM: {}}, "description": desc}
    for code, desc in [(400, "Bad request"), (401, "Missing or invalid API key"), (403, "Not allowed"),
                       (404, "Not found"), (409, "Conflict"), (413, "Body or scope too large"),
                       (422, "Invalid request"), (429, "Rate limited")]
}
