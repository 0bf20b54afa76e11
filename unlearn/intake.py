"""Accepting a deletion request: validate it, resolve its scope to training samples per model,
and write it down. Nothing is queued here; the coalescer batches what intake accepted."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    TypeAdapter,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError
from sqlmodel import Session, col, select

from unlearn.contracts import CONCEPT_PROMPT_KEYS, Scope
from unlearn.identity import hash_subject, sha256_ids
from unlearn.methods import ParamsError, get_method, method_names
from unlearn.registry import resolve_method
from unlearn.settings import Settings
from unlearn.store.models import (
    AuditEvent,
    DeletionRequest,
    Model,
    RequestTarget,
    TrainingRecord,
    new_id,
    utcnow,
)
from unlearn.store.states import RequestStatus


class IntakeError(ValueError):
    """A request that cannot be accepted; `status` is the HTTP status the API answers with."""

    def __init__(self, detail: str, status: int = 422, title: str = "Invalid deletion request") -> None:
        super().__init__(detail)
        self.detail, self.status, self.title = detail, status, title


def _unstorable(value: Any, at: tuple[str, ...] = ()) -> str | None:
    """Why `value` (or something nested in it) cannot be stored, or None. NUL is refused because PostgreSQL
    text cannot hold it (SQLite can: the two back ends would disagree), a lone surrogate because it has
    no UTF-8 encoding, and NaN or ±Infinity because JSON has no such number and PostgreSQL's JSON refuses
    it. Starlette's JSON parser accepts all three ("\\u0000", "\\ud800", the NaN and Infinity literals)."""
    where = f" (at {'.'.join(at)})" if at else ""
    if isinstance(value, str):
        if "\x00" in value:
            return f"text must not contain NUL (\\u0000){where}"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"text must not contain a lone surrogate (\\ud800 to \\udfff){where}"
    elif isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number; NaN and Infinity are not accepted{where}"
    elif isinstance(value, dict | list | tuple):
        pairs = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in pairs:
            found = _unstorable(key, at) or _unstorable(item, (*at, str(key)))
            if found:
                return found
    return None


def refuse_unstorable(value: Any) -> Any:
    """The one check every request value passes (bodies, query and path parameters): a 422 naming the field
    for text or a number no layer can hold, anywhere inside `value`. It runs before pydantic's own string
    check, which refuses a lone surrogate only in a constrained field and says so obscurely."""
    found = _unstorable(value)
    if found:
        raise PydanticCustomError("unstorable", found)
    return value


def text(**constraints: Any) -> Any:
    """The type of a request string, with pydantic's own `StringConstraints` (`max_length=64`, ...): given
    here rather than in `Field`, they keep pydantic's string messages ("at most 64 characters")."""
    return Annotated[str, StringConstraints(**constraints), BeforeValidator(refuse_unstorable)]


Text = text()
# A request's free-form JSON object (method parameters): every key and value inside it is checked.
JSONObject = Annotated[dict[str, Any], BeforeValidator(refuse_unstorable)]


LABELS_KNOWN = "false: the samples come without labels (only label-agnostic methods serve the request)"


# How each scope type is documented: a union discriminated by `type`, each member naming the field that
# type needs. Validation is `ScopeIn`'s (one flat model), so every body it accepts and every 422 it gives
# (wording included) stay as they were; the schema only says which field goes with which type.
class SubjectScope(BaseModel):
    """Everything the service holds about one person (a data subject), in one model or in every model."""
    model_config = ConfigDict(extra="forbid")

    type: Literal["subject"] = Field(description="the scope type")
    subject: text(min_length=1, max_length=256) = Field(
        description="the person's reference in the training records (stored only as a salted hash)",
        examples=["customer-88412"])
    labels_known: bool = Field(True, description=LABELS_KNOWN)


class SamplesScope(BaseModel):
    """Named training samples of the target model."""
    model_config = ConfigDict(extra="forbid")

    type: Literal["samples"] = Field(description="the scope type")
    sample_ids: list[text(min_length=1, max_length=128)] = Field(
        min_length=1, description="training sample ids, as the model's records name them",
        examples=[["digits-0004", "digits-0117"]])
    labels_known: bool = Field(True, description=LABELS_KNOWN)


class ClassScope(BaseModel):
    """Every training sample of one class of the target model (corrective: a class to unlearn)."""
    model_config = ConfigDict(extra="forbid")

    type: Literal["class"] = Field(description="the scope type")
    label: int = Field(ge=0, le=1_000_000, description="the class's label", examples=[3])
    labels_known: bool = Field(True, description=LABELS_KNOWN)


class ConceptScope(BaseModel):
    """A named concept of the target model: a class by name (`digit-3`, `class-3`), or on a text-to-image
    model a word of its captions (`circle`), with the prompts to forget and what to show instead."""
    model_config = ConfigDict(extra="forbid")

    type: Literal["concept"] = Field(description="the scope type")
    concept: text(min_length=1, max_length=128) = Field(description="the concept's name", examples=["digit-3"])
    forget_prompts: list[text(min_length=1, max_length=256)] | None = Field(
        None, max_length=256, description="text-to-image: the prompts to forget (default: the captions that "
                                          "mention the concept)", examples=[["a red circle", "two blue circles"]])
    forget_pattern: text(min_length=1, max_length=128) | None = Field(
        None, description="text-to-image: the regular expression that finds the concept in captions (default: "
                          "the concept as a whole word)", examples=["circles?"])
    override: text(min_length=1, max_length=128) | None = Field(
        None, description="text-to-image: what replaces the concept in the forget prompts (SFD's override)",
        examples=["square"])
    negative_prompt: text(max_length=256) | None = Field(
        None, description="text-to-image: the classifier-free guidance negative prompt for the override")
    labels_known: bool = Field(True, description=LABELS_KNOWN)


SCOPE_TYPES: dict[str, type[BaseModel]] = {"subject": SubjectScope, "samples": SamplesScope, "class": ClassScope,
                                           "concept": ConceptScope}
_SCOPE_UNION = TypeAdapter(Annotated[SubjectScope | SamplesScope | ClassScope | ConceptScope,
                                     Field(discriminator="type")])


class ScopeIn(BaseModel):
    """What to forget: `type` says which of `subject`, `sample_ids`, `label` or `concept` is needed."""
    model_config = ConfigDict(extra="forbid")

    type: Literal["subject", "samples", "class", "concept"] = Field(
        description="subject: one person's data; samples: named samples; class: a class's samples; "
                    "concept: a named concept")
    subject: text(min_length=1, max_length=256) | None = Field(None, description="the person's reference")
    sample_ids: list[Text] | None = Field(None, description="training sample ids")
    label: int | None = Field(None, ge=0, le=1_000_000, description="the class's label")
    concept: text(min_length=1, max_length=128) | None = Field(None, description="the concept's name")
    forget_prompts: list[text(min_length=1, max_length=256)] | None = Field(
        None, max_length=256, description="concept on a text-to-image model: the prompts to forget")
    forget_pattern: text(min_length=1, max_length=128) | None = Field(
        None, description="concept on a text-to-image model: the regex that finds it in captions")
    override: text(min_length=1, max_length=128) | None = Field(
        None, description="concept on a text-to-image model: what replaces it in the forget prompts")
    negative_prompt: text(max_length=256) | None = Field(
        None, description="concept on a text-to-image model: CFG's negative prompt for the override")
    labels_known: bool = Field(True, description=LABELS_KNOWN)

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        # Documented as the discriminated union; the flat model above still does the validating.
        union = handler(_SCOPE_UNION.core_schema)
        return {**union, "title": "Scope", "description": cls.__doc__}

    @model_validator(mode="after")
    def _one_target(self) -> ScopeIn:
        need = {"subject": "subject", "samples": "sample_ids", "class": "label", "concept": "concept"}[self.type]
        if getattr(self, need) in (None, []):
            raise ValueError(f"scope type {self.type!r} needs a non-empty '{need}'")
        if self.sample_ids is not None and any(not s or len(s) > 128 for s in self.sample_ids):
            raise ValueError("sample ids must be 1 to 128 characters")
        if self.type != "concept" and any(getattr(self, k) is not None for k in CONCEPT_PROMPT_KEYS):
            raise ValueError(f"{', '.join(CONCEPT_PROMPT_KEYS)} belong to a concept scope")
        return self


class DeletionRequestIn(BaseModel):
    """A deletion request: what to forget (`scope`), from which model, why (`kind`) and by when."""
    model_config = ConfigDict(extra="forbid")

    model: text(max_length=64) | None = Field(None, description="target model; omit to reach every model "
                              "trained on the subject (subject scope only)", examples=["digits-mlp"])
    scope: ScopeIn = Field(description="what to forget; `type` says which other field it needs")
    kind: Literal["privacy", "corrective"] = Field(
        "privacy", description="privacy: a person's erasure request; corrective: bad, poisoned or unwanted data "
                               "(may need an operator's review)")
    method: text(max_length=32) = Field("auto", description="the unlearning method; `auto` lets the model's "
                                        "family choose", examples=["auto", "retrain", "ssd"])
    params: JSONObject = Field(default_factory=dict, description="method parameters, for operators",
                               examples=[{"alpha": 10}])
    external_id: text(max_length=128) | None = Field(None, description="your own reference (a case or ticket "
                                                     "number): searchable, shown on the dashboard",
                                                     examples=["DSR-2026-0412"])
    due_days: int | None = Field(None, ge=1, le=90, description="deadline in days (default: settings)",
                                 examples=[30])
    suspect_ids: list[text(min_length=1, max_length=128)] | None = Field(
        None, description="corrective requests only: training samples suspected beyond those in `scope` (a larger "
                          "flagged set). When unlearning the flagged samples fails its gate, the family's chain "
                          "tries again forgetting these as well (e.g. SSD on the larger set) before retraining",
        examples=[["digits-0311", "digits-0412"]])


def _train_ids(session: Session, model: str, *where: Any) -> list[str]:
    return list(session.exec(select(TrainingRecord.sample_id).where(
        TrainingRecord.model_name == model, TrainingRecord.split == "train", *where)).all())


BULK_ROUTE = "POST /v1/deletion-requests/bulk"
_IN_QUERY_MAX = 5_000  # ids checked with one IN (…) query; beyond, against the model's whole id set


def known_train_ids(session: Session, bodies: Iterable[DeletionRequestIn]) -> dict[str, set[str]]:
    """The inline samples scopes of `bodies` checked together: model name → those of their ids that are
    training samples of it, one query per model (at most `_IN_QUERY_MAX` ids each; a model with more is
    left out and checked per request). For a batch of requests (`prepare(..., known=…)`), so that checking
    N requests costs one round trip rather than N."""
    wanted: dict[str, set[str]] = {}
    for body in bodies:
        if body.model and body.scope.type == "samples" and body.scope.sample_ids:
            wanted.setdefault(body.model, set()).update(body.scope.sample_ids)
    return {model: set(_train_ids(session, model, col(TrainingRecord.sample_id).in_(sorted(ids))))
            for model, ids in wanted.items() if len(ids) <= _IN_QUERY_MAX}


def _check_known(session: Session, model: str, ids: list[str], known: dict[str, set[str]] | None = None) -> None:
    """Raise IntakeError unless every id is a training sample of `model` (the first few unknown named).
    `known`: what `known_train_ids` found for a batch this request belongs to (no query then)."""
    if known is not None and model in known:
        known_ids = known[model]
    elif len(ids) <= _IN_QUERY_MAX:
        known_ids = set(_train_ids(session, model, col(TrainingRecord.sample_id).in_(ids)))
    else:  # no database takes a million bound parameters; one scan of the model's ids is cheaper anyway
        known_ids = set(_train_ids(session, model))
    unknown = [s for s in ids if s not in known_ids]
    if unknown:
        shown = ", ".join(repr(s) for s in unknown[:5]) + (" …" if len(unknown) > 5 else "")
        raise IntakeError(f"{len(unknown)} sample id(s) are not in the training data of {model!r}: {shown}")


def _resolve(session: Session, body: DeletionRequestIn, settings: Settings,
             known: dict[str, set[str]] | None = None) -> tuple[dict[str, list[str]], dict]:
    """Model name → sample ids to forget there, and the stored scope (no raw subject in it)."""
    scope = body.scope
    stored: dict[str, Any] = {"type": scope.type, "labels_known": scope.labels_known}
    if scope.type == "subject":
        h = hash_subject(scope.subject or "", settings.subject_salt)
        where = [TrainingRecord.subject_hash == h, TrainingRecord.split == "train"]
        if body.model:
            where.append(TrainingRecord.model_name == body.model)
        rows = session.exec(select(TrainingRecord.model_name, TrainingRecord.sample_id).where(*where)).all()
        if not rows:
            where_txt = f"model {body.model!r}" if body.model else "any registered model"
            raise IntakeError(f"no training data of this subject is held by {where_txt}")
        targets: dict[str, list[str]] = {}
        for model, sid in rows:
            targets.setdefault(model, []).append(sid)
        return targets, stored
    if not body.model:
        raise IntakeError(f"scope type {scope.type!r} needs a target 'model'")
    if scope.type == "samples":
        ids = list(dict.fromkeys(scope.sample_ids or []))
        if len(ids) > settings.max_scope_items:
            raise IntakeError(f"scope has {len(ids)} samples; the limit is {settings.max_scope_items} inline: send "
                              f"larger scopes as an upload to {BULK_ROUTE}", 413, "Scope too large")
        _check_known(session, body.model, ids, known)
        stored["sample_ids"] = ids
        return {body.model: ids}, stored
    label = scope.label
    if scope.type == "concept" and _has_captions(session, body.model):
        return {body.model: _concept_ids(session, body.model, scope)}, {
            **stored, "concept": scope.concept,
            **{k: getattr(scope, k) for k in CONCEPT_PROMPT_KEYS if getattr(scope, k) is not None}}
    if scope.type == "concept":
        if any(getattr(scope, k) is not None for k in CONCEPT_PROMPT_KEYS):
            raise IntakeError(f"model {body.model!r} is not a text-to-image model: "
                              f"{', '.join(CONCEPT_PROMPT_KEYS)} do not apply")
        stored["concept"] = scope.concept
        if label is None:
            try:
                label = int(str(scope.concept).removeprefix("digit-").removeprefix("class-"))
            except ValueError:
                raise IntakeError(f"unknown concept {scope.concept!r} for model {body.model!r}") from None
    ids = _train_ids(session, body.model, TrainingRecord.label == label)
    if not ids:
        raise IntakeError(f"model {body.model!r} was trained on no sample of class {label}")
    stored["label"] = label
    return {body.model: ids}, stored


def _has_captions(session: Session, model: str) -> bool:
    return session.exec(select(TrainingRecord.id).where(
        TrainingRecord.model_name == model, col(TrainingRecord.caption).is_not(None)).limit(1)).first() is not None


def _concept_ids(session: Session, model: str, scope: ScopeIn) -> list[str]:
    """The training samples of a text-to-image model whose captions mention the concept (its
    `forget_pattern`, else the concept as a whole word): forgetting the concept forgets them. Raises
    IntakeError (422) when no caption mentions it, or when the request gives no override."""
    from unlearn.families.text_diffusion import mentions

    if not scope.override:
        raise IntakeError("a concept request on a text-to-image model needs an 'override': what the forget "
                          "prompts should show instead (e.g. 'square' for 'circle')")
    rows = session.exec(select(TrainingRecord.sample_id, TrainingRecord.caption).where(
        TrainingRecord.model_name == model, TrainingRecord.split == "train")).all()
    try:
        hit = mentions([c or "" for _, c in rows], scope.concept or "", scope.forget_pattern)
    except ValueError as exc:
        raise IntakeError(str(exc)) from None
    ids = [sid for (sid, _), h in zip(rows, hit, strict=True) if h]
    if not ids:
        how = f"pattern {scope.forget_pattern!r}" if scope.forget_pattern else "that word"
        raise IntakeError(f"no caption of model {model!r} mentions the concept {scope.concept!r} (matched as "
                          f"{how}): it cannot forget what its training text never named")
    return ids


def _suspects(session: Session, body: DeletionRequestIn, settings: Settings) -> list[str]:
    """The request's suspected samples, checked: a corrective request on one model, training ids only."""
    if body.kind != "corrective" or not body.model:
        raise IntakeError("suspect_ids belong to a corrective request on one model")
    ids = list(dict.fromkeys(body.suspect_ids or []))
    if len(ids) > settings.max_scope_items:
        raise IntakeError(f"suspect_ids has {len(ids)} samples; the limit is {settings.max_scope_items}", 413,
                          "Scope too large")
    try:
        _check_known(session, body.model, ids)
    except IntakeError as exc:
        raise IntakeError(f"suspect_ids: {exc.detail}") from None
    return ids


def _check_params(session: Session, body: DeletionRequestIn, models: Iterable[str], scope: Scope) -> None:
    """Validate the request's `params` against every method that will run: the explicit one, or for `auto`
    the one each target model's family resolves to (as the coalescer will). An unknown or out-of-range key
    raises `IntakeError` (422) naming it, e.g. "params.lr: Input should be less than or equal to 1"."""
    if not body.params:  # every parameter has a default
        return
    for model in sorted(models):
        method = resolve_method(session, model, body.method, scope)
        try:
            get_method(method).parse_params(body.params)
        except ParamsError as exc:
            chosen = f" (chosen by auto for model {model!r})" if body.method == "auto" else ""
            raise IntakeError(f"{exc}; method {method!r}{chosen}") from None


@dataclass
class Submission:
    """A validated request as plain column values, in no session yet: the request row, one target row per
    model and the audit event of its arrival. `add_to(session)` writes them as ORM rows; `rows()` gives
    them for a bulk INSERT (building an ORM row costs more than the INSERT itself, for a batch)."""

    request: dict[str, Any]
    targets: list[dict[str, Any]]
    event: dict[str, Any]

    def rows(self) -> list[tuple[Any, dict[str, Any]]]:
        """(table, values) per row, in an order the foreign keys allow."""
        return [(DeletionRequest.__table__, self.request), *((RequestTarget.__table__, t) for t in self.targets),
                (AuditEvent.__table__, self.event)]

    def add_to(self, session: Session) -> tuple[DeletionRequest, list[RequestTarget]]:
        request = DeletionRequest(**self.request)
        targets = [RequestTarget(**t) for t in self.targets]
        session.add(request)
        session.add_all(targets)
        session.add(AuditEvent(**self.event))
        return request, targets


def prepare(session: Session, settings: Settings, tenant: str, body: DeletionRequestIn, actor: str = "api", *,
            resolved: tuple[dict[str, list[str]], dict] | None = None,
            known: dict[str, set[str]] | None = None) -> Submission:
    """Validate a request and build its rows (status `received`, or `pending_review`), adding nothing to
    `session`, which is only read. Raises IntakeError (404 unknown model, 413 scope too large, 422 otherwise).
    `resolved`: the targets and stored scope already worked out (a bulk upload, `submit_bulk`); `known`:
    the training ids a batch's samples scopes were checked against (`known_train_ids`)."""
    if body.model is not None and session.get(Model, body.model) is None:
        raise IntakeError(f"unknown model {body.model!r}", 404, "Unknown model")
    if body.method != "auto":
        if body.method not in method_names():
            raise IntakeError(f"unknown method {body.method!r}; known: auto, {', '.join(method_names())}")
        if body.model is not None:
            family = session.get(Model, body.model).family
            if not get_method(body.method).applies_to(family):
                raise IntakeError(f"method {body.method!r} does not apply to {family} model {body.model!r}")
        if not body.scope.labels_known and get_method(body.method).needs_labels:
            raise IntakeError(f"method {body.method!r} reads the labels of the samples it forgets, and this "
                              "request's samples come without labels (labels_known is false)")
    targets, stored_scope = resolved or _resolve(session, body, settings, known)
    if body.suspect_ids:
        stored_scope["suspect_ids"] = _suspects(session, body, settings)
    _check_params(session, body, targets, Scope.from_dict(stored_scope, body.kind))
    received = utcnow()
    due = received + timedelta(days=body.due_days or settings.due_days)
    review = settings.review_required_for
    status = RequestStatus.PENDING_REVIEW if body.scope.type in review or body.kind in review else \
        RequestStatus.RECEIVED
    request = {"id": new_id(), "tenant": tenant, "external_id": body.external_id, "model_name": body.model,
               "scope_type": body.scope.type, "scope": stored_scope, "kind": body.kind, "method": body.method,
               "params": body.params, "status": str(status), "reason": None, "completed_at": None,
               "subject_hash": hash_subject(body.scope.subject, settings.subject_salt) if body.scope.subject else None,
               "received_at": received, "updated_at": received, "due_at": due, "original_due_at": due}
    rows = [{"request_id": request["id"], "model_name": m, "forget_ids": sorted(ids), "job_id": None,
             "status": "pending", "version_id": None, "created_at": received} for m, ids in sorted(targets.items())]
    event = {"at": received, "actor": actor, "entity_type": "request", "entity_id": request["id"],
             "from_state": None, "to_state": str(status), "reason": None,
             "data": {"models": sorted(targets), "samples": sum(len(v) for v in targets.values())}}
    return Submission(request, rows, event)


def submit(session: Session, settings: Settings, tenant: str, body: DeletionRequestIn,
           actor: str = "api", *, resolved: tuple[dict[str, list[str]], dict] | None = None
           ) -> tuple[DeletionRequest, list[RequestTarget]]:
    """Validate and record a request (status `received`) with one target per affected model, flushed into
    `session` (the caller commits). Raises IntakeError as `prepare` does, having added nothing."""
    request, targets = prepare(session, settings, tenant, body, actor, resolved=resolved).add_to(session)
    session.flush()
    return request, targets


class BulkRequestIn(BaseModel):
    """A deletion request whose scope comes as an upload (`submit_bulk`): everything but the list."""
    model_config = ConfigDict(extra="forbid")

    model: text(max_length=64) = Field(description="the target model")
    kind: Literal["privacy", "corrective"] = Field("privacy", description="as for an inline request")
    method: text(max_length=32) = Field("auto", description="as for an inline request")
    external_id: text(max_length=128) | None = Field(None, description="your own reference")
    due_days: int | None = Field(None, ge=1, le=90, description="deadline in days (default: settings)")


def submit_bulk(session: Session, settings: Settings, tenant: str, body: BulkRequestIn, column: str,
                values: list[str], *, actor: str = "api") -> tuple[DeletionRequest, list[RequestTarget]]:
    """Record a request over an uploaded list: training sample ids (`column` "sample_id") or subjects
    ("subject", each resolved to its samples in `body.model`), at most `settings.max_bulk_scope_items`.
    Stored as a samples scope; the stored scope keeps the count and the list's sha256, not the list (the
    targets hold the sample ids). Raises IntakeError: 413 over the limit, 422 for an id the model was
    not trained on or a subject it holds nothing of, 404 for an unknown model."""
    values = list(dict.fromkeys(values))
    limit = settings.max_bulk_scope_items
    if len(values) > limit:
        raise IntakeError(f"the upload lists {len(values)} {column}s; the limit is {limit}", 413, "Scope too large")
    if session.get(Model, body.model) is None:
        raise IntakeError(f"unknown model {body.model!r}", 404, "Unknown model")
    digest = sha256_ids(values)
    if column == "sample_id":
        _check_known(session, body.model, values)
        ids = values
    else:
        wanted = {hash_subject(v, settings.subject_salt): n for n, v in enumerate(values)}
        rows = session.exec(select(TrainingRecord.subject_hash, TrainingRecord.sample_id).where(
            TrainingRecord.model_name == body.model, TrainingRecord.split == "train",
            col(TrainingRecord.subject_hash).is_not(None))).all()
        held = [(h, sid) for h, sid in rows if h in wanted]
        missing = sorted(set(wanted.values()) - {wanted[h] for h, _ in held})
        if missing:
            shown = ", ".join(str(n + 1) for n in missing[:5]) + (" …" if len(missing) > 5 else "")
            raise IntakeError(f"{len(missing)} subject(s) of the upload have no training data in {body.model!r} "
                              f"(line or row {shown})")
        ids = sorted({sid for _, sid in held})
    stored = {"type": "samples", "labels_known": True,
              "bulk": {"column": column, "count": len(values), "samples": len(ids), "sha256": digest}}
    request_in = DeletionRequestIn.model_construct(
        model=body.model, scope=ScopeIn.model_construct(type="samples", labels_known=True, subject=None),
        kind=body.kind, method=body.method, params={}, external_id=body.external_id, due_days=body.due_days)
    return submit(session, settings, tenant, request_in, actor, resolved=({body.model: ids}, stored))
