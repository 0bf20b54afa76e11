"""The OpenAPI document: FastAPI's, with every operation summarised and described, every parameter
described, and the request headers the routes check themselves (Idempotency-Key) marked as required.

Operations are described here, in one table by operation id, rather than in each route's docstring, so
that one test (tests/test_openapi_docs.py) sees that none is left out when a route is added.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

IDEMPOTENCY = ("A key of your choice (at most 255 characters), unique per request you mean to create. "
               "Sending the same key with the same body again returns the first answer (with "
               "`Idempotent-Replayed: true`) instead of a second request; with another body it is refused "
               "(422). Without it the request is refused (400).")

# operation id → (summary, description)
OPERATIONS: dict[str, tuple[str, str]] = {
    "createDeletionRequest": (
        "Submit a deletion request",
        "Accepts a request to forget data from trained models: a person's data (`subject`), named training "
        "samples, a class or a concept. The scope is resolved to training samples per model at once (404 for "
        "an unknown model, 422 when nothing matches), the request is stored, and the workers batch it with "
        "others, unlearn, verify the result against an exact retrain and promote it. Poll the request (or its "
        "`Location`) for the status; a completed request has a signed certificate. Requires `Idempotency-Key`."),
    "listDeletionRequests": (
        "List deletion requests",
        "Newest first, a page at a time. Submitters see their tenant's requests; operators see all. Filter by "
        "status (repeatable), model, deadline flag, or `q`: an id prefix, an external id or a tenant."),
    "getDeletionRequest": (
        "Read a deletion request",
        "Its status, deadline, targets per model, the jobs that served it and the verifier's verdicts."),
    "cancelDeletionRequest": (
        "Cancel a deletion request (operator)",
        "Cancels a request that is not yet final; its targets leave any batch not yet started. 409 for a "
        "completed, rejected, failed or canceled request."),
    "getRequestAudit": (
        "Read a request's audit trail",
        "Every state change of the request, its jobs, the versions that served it and its certificate, oldest "
        "first, each with its actor (`actor_detail` names a key's label, tenant and role, or the worker)."),
    "approveDeletionRequest": (
        "Approve a request under review (operator)",
        "A request in `pending_review` (a corrective request, by the settings) goes on to be served."),
    "denyDeletionRequest": (
        "Deny a request under review (operator)",
        "A request in `pending_review` is rejected, with the reason in its audit trail."),
    "decideDeletionRequest": (
        "Decide a request that needs review (operator)",
        "A request in `needs_review` (every method of its model's chain failed its gate, or the cost budget or "
        "the deadline stopped the chain; each attempt's verdict is in `attempts`) waits for an operator. "
        "`reject` ends it `rejected` with the reason: the only way a request whose work ran ends so. `retry` "
        "queues it again for a fresh chain, optionally starting with another `method` and `params`. 409 for a "
        "request not in `needs_review`; 422 for a method or parameters that do not fit its models."),
    "extendDeletionRequest": (
        "Extend a request's deadline (operator)",
        "Moves the due date of an open request later by `days`, with a reason. The total extension from the "
        "first due date is capped by the settings (409 beyond it)."),
    "listModels": (
        "List models",
        "Every registered model with its family and the version that serves now (its champion)."),
    "listModelVersions": (
        "List a model's versions",
        "Every version of the model, oldest first: how it was made, its verdict, whether it is tainted (still "
        "holds data a completed request removed) and the requests it serves."),
    "rollbackModel": (
        "Roll a model back (operator)",
        "Makes an earlier version the champion again. A tainted version is refused (409): rolling back must not "
        "bring forgotten data back."),
    "getVersionReport": (
        "Read a version's verifier report",
        "The verifier's criteria for the version, each value against its gate and the retrain reference, and the "
        "plots recorded with it."),
    "getVersionReportPlot": (
        "Read a verifier plot",
        "One plot (PNG) named in the version's report."),
    "publicKey": (
        "Read the certificate signing key",
        "The Ed25519 public key that signs deletion certificates, and its id: verify a certificate offline with "
        "it (`unlearn verify-certificate`)."),
    "getCertificate": (
        "Read a request's deletion certificate",
        "The signed statement that a completed request's data was forgotten: the models, the versions that "
        "serve without it, the verifier's verdicts and the times. 409 until the request is completed."),
    "listJobs": (
        "List unlearning jobs (operator)",
        "Newest first; filter by stage (repeatable) and model."),
    "retryJob": (
        "Retry a failed job (operator)",
        "Gives a failed job a fresh attempt budget and sends it to the workers again; its requests reopen. 409 "
        "for a job that did not fail."),
    "listWorkers": (
        "List workers (operator)",
        "Every worker that reported a heartbeat: its queues, device, current job, GPU memory, and whether it was "
        "seen recently."),
    "overview": (
        "Read the service's overview (operator)",
        "Requests by status, overdue and at-risk counts, queue depths, active jobs and live workers."),
    "complianceSummary": (
        "Read the compliance summary (operator)",
        "The newest continuous-compliance check per model (the champion still forgets every completed "
        "request's data), the regressions found and the requests they reopened."),
    "runComplianceCheck": (
        "Check a model's compliance now (operator)",
        "Re-verifies that the model's champion still forgets every sample it should. A regression reopens the "
        "affected requests, which are served again."),
    "dashboardLogin": (
        "Sign in to the dashboard",
        "Turns an operator's API key into an HttpOnly, SameSite=Strict session cookie. A submitter's key is "
        "refused (403)."),
    "dashboardLogout": (
        "Sign out of the dashboard",
        "Clears the session cookie."),
    "dashboardSession": (
        "Read the dashboard session",
        "The tenant and role of the key behind the session cookie (or the API key sent)."),
    "health": (
        "Health check",
        "Whether the service and its database answer. No key needed."),
    "metrics": (
        "Prometheus metrics",
        "Request, job, queue and deadline metrics in the Prometheus text format."),
}

# parameter name → description, wherever a route did not give its own
PARAMETERS: dict[str, str] = {
    "request_id": "the deletion request's id",
    "name": "the model's name",
    "version_id": "the model version's id",
    "plot": "the plot's name, as the version's report lists it",
    "job_id": "the job's id",
    "status": "only requests in this status (repeat for several)",
    "model": "only this model's",
    "flag": "only overdue requests, or only those at risk",
    "page": "the page to read, from 1",
    "size": "requests per page",
    "stage": "only jobs in this stage (repeat for several)",
    "limit": "at most this many jobs",
    "idempotency-key": IDEMPOTENCY,
}
REQUIRED_HEADERS = {"idempotency-key"}
# Request bodies by operation id: one example per case a client meets.
BODY_EXAMPLES: dict[str, dict[str, dict[str, Any]]] = {
    "createDeletionRequest": {
        "subject": {"summary": "A person's data, from one model",
                    "value": {"model": "digits-mlp", "scope": {"type": "subject", "subject": "customer-88412"},
                              "external_id": "DSR-2026-0412"}},
        "subject-everywhere": {"summary": "A person's data, from every model trained on it",
                               "value": {"scope": {"type": "subject", "subject": "customer-88412"},
                                         "external_id": "DSR-2026-0413", "due_days": 30}},
        "samples": {"summary": "Named training samples",
                    "value": {"model": "digits-mlp", "scope": {"type": "samples",
                                                               "sample_ids": ["digits-0004", "digits-0117"]}}},
        "class": {"summary": "A whole class (corrective)",
                  "value": {"model": "digits-mlp", "kind": "corrective", "scope": {"type": "class", "label": 3}}},
        "concept": {"summary": "A named concept (corrective), by a chosen method",
                    "value": {"model": "digits-mlp", "kind": "corrective", "method": "ssd",
                              "scope": {"type": "concept", "concept": "digit-3"}}},
        "concept-text-to-image": {"summary": "A concept of a text-to-image model: the captions' word and its override",
                                  "value": {"model": "shapes-t2i", "kind": "corrective",
                                            "scope": {"type": "concept", "concept": "circle", "override": "square"}}},
    },
}
# Examples for headers and path parameters (query parameters keep the generators' own values).
PARAMETER_EXAMPLES = {"idempotency-key": "3f1c2b7e-5a0d-4d8e-9b61-2c7f0e4a9d15",
                      "request_id": "9c2e41d07b6a4f5e8d3c1b0a29f8e7d6", "name": "digits-mlp"}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document for `app`, completed from the tables above (computed once, then cached)."""
    if app.openapi_schema:
        return app.openapi_schema
    spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                       tags=TAGS)
    for item in spec["paths"].values():
        for operation in item.values():
            summary, description = OPERATIONS.get(operation.get("operationId", ""), (None, None))
            if summary:
                operation["summary"], operation["description"] = summary, description
            for param in operation.get("parameters", []):
                key = param["name"].lower()
                if not param.get("description") and key in PARAMETERS:
                    param["description"] = PARAMETERS[key]
                if key in REQUIRED_HEADERS and param["in"] == "header":
                    # The route checks it itself and answers 400 without it (a 422 would blame the body).
                    param["required"] = True
                    param["name"] = "Idempotency-Key"  # as clients write it (headers match in any case)
                    param["schema"] = {"type": "string", "minLength": 1, "maxLength": 255}
                if key in PARAMETER_EXAMPLES and "example" not in param:
                    param["example"] = PARAMETER_EXAMPLES[key]
            examples = BODY_EXAMPLES.get(operation.get("operationId", ""))
            if examples:
                operation["requestBody"]["content"]["application/json"]["examples"] = examples
    app.openapi_schema = spec
    return spec


TAGS = [
    {"name": "requests", "description": "Deletion requests: submit, follow, audit, certificates."},
    {"name": "operator", "description": "What operators do: review, extend, retry, overview, compliance."},
    {"name": "models", "description": "Models, their versions, verifier reports and rollbacks."},
    {"name": "certificates", "description": "Signed deletion certificates and the key that signs them."},
    {"name": "dashboard", "description": "The operator dashboard's session."},
    {"name": "ops", "description": "Health and metrics for the platform."},
]
