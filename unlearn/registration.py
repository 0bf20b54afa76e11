"""Registering a team's own model: its folder, its training records and how it is verified.

A team brings a model folder (a `save_pretrained` folder, a diffusers pipeline, or one of this
project's architectures), the records it was trained on (JSONL, CSV, Parquet or a `datasets` folder,
read by `unlearn.data.records`), optionally records it never trained on (the holdout), a reference
policy and, for the `retrain` policy, a recipe. `register` checks everything before anything is kept:

1. the records: every row checked (`records.normalise`: the first bad row named), ids unique across
   train and holdout, the holdout disjoint from train, a holdout present when the policy needs one;
2. a staged copy under `<artifact root>/.staging/`: the model folder, the records folder and every
   folder the registration names (the recipe's `base` checkpoint, a precomputed reference, a judge),
   so that the registry never points at a folder the team may change or delete;
3. the family's own checks on the staged copy (`Family.prepare`, `Family.byo_meta`,
   `Family.check_forward`: the weights load with the declared architecture and the model runs one
   forward pass on one record);
4. only then is the staged folder moved to `<artifact root>/<name>/` (one rename) and the model, its
   training records (bulk insert), version 1 and its champion alias are written in one transaction.

Any failure raises `RegistrationError` with one line naming the reason, and leaves nothing behind:
no row, no folder. Registering the same content again (same folder bytes, records, policy, recipe and
options; `content_sha256`) is a no-op that says so; other content under a registered name is refused.

Subjects are hashed (salted HMAC) when the records are read; the raw identifier is never written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, func, select

from unlearn import registry
from unlearn.artifacts import META, locate, publish, read_meta, record, stored_size, write_meta
from unlearn.data import records as rec
from unlearn.families import family_names, get_family
from unlearn.identity import sha256_ids, valid_model_name
from unlearn.store.bulk import insert_training_records
from unlearn.store.models import Alias, Model, ModelVersion, TrainingRecord
from unlearn.store.states import VersionStatus
from unlearn.store.transitions import audit

log = logging.getLogger(__name__)

STAGING = ".staging"
UPLOADS = ".uploads"
RECORDS_DIR = "records"
ASSETS_DIR = "assets"


class RegistrationError(ValueError):
    """A registration refused; the message is one line naming the reason. Nothing was kept."""


class AlreadyRegistered(RegistrationError):
    """The name is taken by a model registered with other content."""


@dataclass
class Registration:
    """What a team registers. Paths are on the machine that runs the registration.

    records: the training records (a split column may mark holdout rows); None when they were uploaded
    batch by batch (`save_upload`). holdout: records never trained on. fields: which source column holds
    each canonical field. reference: "retrain" | "precomputed" | "holdout" (the family's
    `reference_policies`). recipe: how the model was trained, for `retrain` (the family names the keys;
    a `base` path is copied). reference_dir: the precomputed reference folder. judge_dir: the classifier
    folder that judges a diffusion model's generations. analytic_head: convert a classifier to a frozen
    backbone plus an analytic head fitted on its records (ACU's setting)."""

    name: str
    family: str
    path: Path
    records: Path | None = None
    holdout: Path | None = None
    fields: rec.FieldMap = field(default_factory=rec.FieldMap)
    reference: str = "retrain"
    recipe: dict[str, Any] | None = None
    reference_dir: Path | None = None
    judge_dir: Path | None = None
    analytic_head: bool = False
    description: str = ""


@dataclass
class Registered:
    """The outcome: the model's version 1, whether this call created it (False: the same content was
    already registered), and counts of what was registered."""

    name: str
    version_id: str
    created: bool
    content_sha256: str
    counts: dict[str, int]

    def message(self) -> str:
        c = self.counts
        head = "registered" if self.created else "already registered with the same content: nothing changed"
        return (f"{self.name}: {head} (version 1 {self.version_id}; {c.get('train', 0)} training records, "
                f"{c.get('holdout', 0)} holdout, {c.get('subjects', 0)} subjects)")


# ---------------------------------------------------------------- records

def read_records(reg: Registration, *, salt: str, uploads: Path | None = None) -> tuple[list[dict], tuple | None]:
    """The canonical rows of the registration's records and holdout (or of its uploaded batches), checked
    across files: ids unique, the holdout disjoint from train. Raises RegistrationError."""
    try:
        if reg.records is None:
            rows, shape = _uploaded_rows(uploads)
        else:
            path = Path(reg.records)
            rows, shape = rec.normalise(rec.read_table(path), reg.fields, salt=salt, split="train",
                                        source=str(path), base_dir=path.parent)
        if reg.holdout is not None:
            path = Path(reg.holdout)
            if reg.fields.split is not None:  # a holdout file is all holdout, whatever its split column says
                fields = rec.FieldMap(**{**reg.fields.to_dict(), "split": None})
            else:
                fields = reg.fields
            held, held_shape = rec.normalise(rec.read_table(path), fields, salt=salt, split="holdout",
                                             source=str(path), base_dir=path.parent)
            if shape is not None and held_shape is not None and tuple(held_shape) != tuple(shape):
                raise rec.RecordError(f"{path}: images of shape {held_shape} differ from the records' {shape}")
            rec.check_disjoint(rows, held, source=str(path))
            rows = rows + held
    except rec.RecordError as exc:
        raise RegistrationError(str(exc)) from None
    if not any(r["split"] == "train" for r in rows):
        raise RegistrationError("the records hold no training rows")
    return rows, shape


def _uploaded_rows(uploads: Path | None) -> tuple[list[dict], tuple | None]:
    batches = sorted(uploads.glob("batch-*.json")) if uploads is not None and uploads.is_dir() else []
    if not batches:
        raise rec.RecordError("no records: give a records file, or upload them first "
                              "(POST /v1/models/{name}/records)")
    rows: dict[str, dict] = {}
    shape = None
    for b in batches:
        doc = json.loads(b.read_text())
        if doc["image_shape"] is not None:
            if shape is not None and tuple(doc["image_shape"]) != tuple(shape):
                raise rec.RecordError(f"upload {b.stem}: images of shape {doc['image_shape']} differ from {shape}")
            shape = tuple(doc["image_shape"])
        for r in doc["rows"]:
            seen = rows.get(r["sample_id"])
            if seen is not None and seen != r:  # a re-sent record is the same record, or a conflict
                raise rec.RecordError(f"upload {b.stem}: id {r['sample_id']!r} was uploaded before with other content")
            rows[r["sample_id"]] = r
    return list(rows.values()), shape


def uploads_dir(artifact_root: Path, name: str) -> Path:
    """Where the record batches uploaded for a model not yet registered wait (canonical rows: subjects
    already hashed)."""
    if not valid_model_name(name):
        raise RegistrationError(f"invalid model name {name!r}: use lowercase letters, digits, '.', '_', '-'")
    return Path(artifact_root).resolve() / UPLOADS / name


def save_upload(artifact_root: Path, name: str, batch: int, table: Any, fields: rec.FieldMap, *, salt: str,
                split: str = "train") -> dict[str, Any]:
    """Check one uploaded batch of records (`datasets.Dataset`) and keep its canonical rows as batch
    number `batch` of the model `name` (not yet registered). Sending a batch again replaces it (the
    upload resumes from any batch); a record id sent in two batches must carry the same content.
    Returns {"batch", "records", "batches", "total"}. Raises RegistrationError."""
    if not 0 <= batch < 1_000_000:
        raise RegistrationError(f"batch {batch} is out of range [0, 1000000)")
    try:
        rows, shape = rec.normalise(table, fields, salt=salt, split=split, source=f"batch {batch}")
    except rec.RecordError as exc:
        raise RegistrationError(str(exc)) from None
    folder = uploads_dir(artifact_root, name)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"batch-{batch:06d}.json"
    tmp = target.with_suffix(f".tmp-{uuid.uuid4().hex}")
    tmp.write_text(json.dumps({"image_shape": list(shape) if shape else None, "rows": rows}))
    tmp.replace(target)  # a batch is whole or absent
    return {"batch": batch, "records": len(rows), **upload_status(artifact_root, name)}


def upload_status(artifact_root: Path, name: str) -> dict[str, Any]:
    """The batches uploaded so far for `name` and how many records they hold."""
    folder = uploads_dir(artifact_root, name)
    batches = sorted(folder.glob("batch-*.json")) if folder.is_dir() else []
    total = sum(len(json.loads(b.read_text())["rows"]) for b in batches)
    return {"batches": [int(b.stem.split("-")[1]) for b in batches], "total": total}


# ---------------------------------------------------------------- content

def _folder_sha(folder: Path | None) -> str | None:
    if folder is None:
        return None
    return registry.build_manifest(Path(folder))["sha256"]


def _check_folder(path: Path | None, what: str) -> Path | None:
    if path is None:
        return None
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise RegistrationError(f"{what} {path}: no such folder")
    if not any(p.is_file() for p in path.rglob("*")):
        raise RegistrationError(f"{what} {path}: the folder is empty")
    return path


def content_sha256(reg: Registration, rows_sha: str) -> str:
    """One hash over everything a registration keeps: the model folder's bytes, the records' content,
    the policy, the recipe (with its base folder's bytes), the other folders and the options."""
    recipe = dict(reg.recipe or {})
    base = recipe.pop("base", None)
    doc = {"family": reg.family, "model": _folder_sha(reg.path), "records": rows_sha, "reference": reg.reference,
           "recipe": recipe, "base": _folder_sha(Path(base)) if base else None,
           "reference_dir": _folder_sha(reg.reference_dir), "judge": _folder_sha(reg.judge_dir),
           "analytic_head": reg.analytic_head}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _rebase(value: Any, old: str, new: str) -> Any:
    """`value` with every string path under `old` moved under `new` (the staged folder's final place)."""
    if isinstance(value, str):
        return new + value[len(old):] if value == old or value.startswith(old + "/") else value
    if isinstance(value, Mapping):
        return {k: _rebase(v, old, new) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rebase(v, old, new) for v in value]
    return value


def _copy_folder(src: Path, dest: Path) -> None:
    # A manifest from elsewhere would be trusted as ours: the registry writes its own.
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(registry.MANIFEST, ".git", "__pycache__"))


# ---------------------------------------------------------------- registration

def _existing(session: Session, name: str, content: str) -> Registered | None:
    model = session.get(Model, name)
    if model is None:
        return None
    first = session.exec(select(ModelVersion).where(ModelVersion.model_name == name, ModelVersion.version == 1)).first()
    try:
        recorded = (read_meta(locate(first.artifact_path)).get("registration") or {}).get("content_sha256")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded != content:
        raise AlreadyRegistered(f"model {name!r} is already registered with other content; register this one "
                                "under another name")
    return Registered(name=name, version_id=first.id, created=False, content_sha256=content,
                      counts=record_counts(session, name))


def record_counts(session: Session, name: str) -> dict[str, int]:
    """Training records, holdout records and distinct subjects registered for model `name`."""
    def count(*where: Any) -> int:
        return int(session.exec(select(func.count()).select_from(TrainingRecord)
                                .where(TrainingRecord.model_name == name, *where)).one())

    subjects = session.exec(select(func.count(func.distinct(TrainingRecord.subject_hash))).where(
        TrainingRecord.model_name == name, TrainingRecord.subject_hash.is_not(None))).one()
    return {"train": count(TrainingRecord.split == "train"), "holdout": count(TrainingRecord.split == "holdout"),
            "subjects": int(subjects)}


def register(session: Session, reg: Registration, *, artifact_root: Path, salt: str,
             actor: str = "system") -> Registered:
    """Check and register `reg` (see the module docstring); commit the session afterwards.

    Raises RegistrationError, with nothing kept, for: an invalid or taken name, an unknown family or
    a policy it cannot verify under, a missing folder, a bad record (named by file and row), a holdout
    that overlaps train or is missing where the policy needs it, a recipe the family cannot retrain
    from, weights that do not load with the declared architecture or a model that fails one forward
    pass on one record."""
    if not valid_model_name(reg.name):
        raise RegistrationError(f"invalid model name {reg.name!r}: use lowercase letters, digits, '.', '_', '-'")
    if reg.family not in family_names():
        raise RegistrationError(f"unknown family {reg.family!r}; known: {', '.join(family_names())}")
    fam = get_family(reg.family)
    if reg.reference not in fam.reference_policies:
        raise RegistrationError(f"the {reg.family} family verifies under the reference policies "
                                f"{', '.join(fam.reference_policies)}, not {reg.reference!r}")
    reg.path = _check_folder(reg.path, "model folder")
    reg.reference_dir = _check_folder(reg.reference_dir, "reference folder")
    reg.judge_dir = _check_folder(reg.judge_dir, "judge folder")
    if reg.reference == "precomputed" and reg.reference_dir is None:
        raise RegistrationError("the precomputed policy needs the reference folder (--reference-dir)")
    if reg.recipe and reg.recipe.get("base"):
        reg.recipe = {**reg.recipe, "base": str(_check_folder(Path(str(reg.recipe["base"])), "recipe base"))}
    root = Path(artifact_root).resolve()
    rows, shape = read_records(reg, salt=salt, uploads=uploads_dir(root, reg.name))
    if reg.reference == "holdout" and not any(r["split"] == "holdout" for r in rows):
        raise RegistrationError("the holdout policy needs records the model never trained on: give --holdout FILE "
                                "or a split column with 'holdout' rows")
    content = content_sha256(reg, rec.content_sha256(rows, shape))
    if (same := _existing(session, reg.name, content)) is not None:
        return same
    final = registry.artifact_dir(root, reg.name)
    staged = root / STAGING / f"{reg.name}-{uuid.uuid4().hex[:12]}"
    try:
        meta = _stage(fam, reg, rows, shape, staged, content)
        placed = _place(staged, final, meta)
        try:
            return _insert(session, reg, final, placed, content, actor)
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _stage(fam: Any, reg: Registration, rows: list[dict], shape: tuple | None, staged: Path,
           content: str) -> dict[str, Any]:
    """Copy and check everything under `staged`; returns the v1 unlearn.json with staged paths."""
    v1 = staged / "v1"
    _copy_folder(reg.path, v1)
    own = read_meta(v1) if (v1 / META).exists() else {}  # one of this project's architectures
    if own.get("family") not in (None, reg.family):
        raise RegistrationError(f"{reg.path} holds a {own['family']} model, not a {reg.family} model")
    records_dir = staged / RECORDS_DIR
    num_classes = own.get("num_classes")
    rec.save(rows, records_dir, image_shape=shape, num_classes=num_classes)
    records = rec.Records(records_dir)
    assets = staged / ASSETS_DIR
    recipe = dict(reg.recipe) if reg.recipe else None
    if recipe and recipe.get("base"):
        _copy_folder(Path(recipe["base"]), assets / "base")
        recipe["base"] = str(assets / "base")
    reference: dict[str, Any] = {"policy": reg.reference}
    if reg.reference_dir is not None:
        _copy_folder(reg.reference_dir, assets / "reference")
        registry.write_manifest(assets / "reference")
        reference["dir"] = str(assets / "reference")
    options: dict[str, Any] = {"recipe": recipe, "reference": reg.reference, "analytic_head": reg.analytic_head}
    if reg.judge_dir is not None:
        _copy_folder(reg.judge_dir, assets / "judge")
        options["judge_dir"] = str(assets / "judge")
    try:
        fam.prepare(v1, records, options)
        extra = fam.byo_meta(v1, records, options)
        meta = {**own, **extra, "family": reg.family, "model": reg.name,
                "dataset": {"name": "records", "path": str(records_dir)}, "reference": reference,
                "original_dir": str(v1),
                "registration": {"content_sha256": content, "fields": reg.fields.to_dict(),
                                 "recipe": recipe, "source": str(reg.path)}}
        if recipe is not None:
            meta["recipe"] = recipe
        write_meta(v1, meta)
        fam.check_forward(v1, records)
    except RegistrationError:
        raise
    except (ValueError, KeyError, OSError, RuntimeError, TypeError) as exc:  # the family's reason, one line
        raise RegistrationError(f"{reg.name}: {_one_line(exc)}") from None
    return meta


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _place(staged: Path, final: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Move the staged folder to its final place (one rename) and rewrite its paths; returns the meta."""
    if final.exists():  # left by a registration that died between its rename and its commit
        log.warning("removing %s: a leftover of an unfinished registration", final)
        aside = final.with_name(final.name + f".stale-{uuid.uuid4().hex[:8]}")
        final.rename(aside)
        shutil.rmtree(aside, ignore_errors=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    staged.rename(final)
    placed = _rebase(meta, str(staged), str(final))
    write_meta(final / "v1", placed)
    registry.write_manifest(final / RECORDS_DIR)
    return placed


def _insert(session: Session, reg: Registration, final: Path, meta: dict[str, Any], content: str,
            actor: str) -> Registered:
    v1 = final / "v1"
    sha = registry.write_manifest(v1)
    # Into the store (when one is in use) before the rows that name them commit: the records and the
    # assets first, the version last.
    publish(final / RECORDS_DIR)
    for asset in sorted((final / ASSETS_DIR).iterdir()) if (final / ASSETS_DIR).is_dir() else ():
        if not (asset / registry.MANIFEST).exists():
            registry.write_manifest(asset)
        publish(asset)
    publish(v1)
    records = rec.Records(final / RECORDS_DIR)
    try:
        session.add(Model(name=reg.name, family=reg.family, description=reg.description))
        session.flush()
        insert_training_records(session, reg.name, records.records())
        version = ModelVersion(model_name=reg.name, version=1, family=reg.family, method="train",
                               artifact_path=record(v1), weights_sha256=sha, stored_sha256=sha,
                               stored_bytes=stored_size(v1), status=VersionStatus.PROMOTED,
                               verdict=None, params_hash="", forget_hash=sha256_ids([]))
        session.add(version)
        session.flush()
        session.add(Alias(model_name=reg.name, alias=registry.CHAMPION, version_id=version.id))
        audit(session, actor=actor, entity_type="model", entity_id=reg.name, to_state="registered",
              reason="a team's model registered",
              data={"family": reg.family, "reference": meta["reference"]["policy"], "content_sha256": content,
                    "records": records.meta["counts"]})
        audit(session, actor=actor, entity_type="alias", entity_id=f"{reg.name}@{registry.CHAMPION}",
              to_state=version.id, reason="model registered")
        session.flush()
    except IntegrityError:
        session.rollback()
        raise AlreadyRegistered(f"model {reg.name!r} is already registered") from None
    uploads = uploads_dir(final.parent, reg.name)
    shutil.rmtree(uploads, ignore_errors=True)
    return Registered(name=reg.name, version_id=version.id, created=True, content_sha256=content,
                      counts={**records.meta["counts"], "subjects": records.meta["subjects"]})


def load_recipe(path: Path | None) -> dict[str, Any] | None:
    """A recipe JSON file as a dict (its `base`, if relative, is read relative to the file).
    Raises RegistrationError for a missing or malformed file."""
    if path is None:
        return None
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise RegistrationError(f"recipe {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise RegistrationError(f"recipe {path}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise RegistrationError(f"recipe {path}: a JSON object is expected")
    base = doc.get("base")
    if isinstance(base, str) and not Path(base).expanduser().is_absolute():  # relative to the recipe file
        doc["base"] = str(path.resolve().parent / base)
    return doc


def describe(session: Session, name: str) -> dict[str, Any]:
    """A registered model as `GET /v1/models/{name}` shows it: family, counts of records, holdout and
    subjects, reference policy, champion. Raises RegistrationError for an unknown model."""
    model = session.get(Model, name)
    if model is None:
        raise RegistrationError(f"unknown model {name!r}")
    try:
        champ = registry.champion(session, name)
        meta = read_meta(locate(champ.artifact_path))
    except (registry.RegistryError, OSError, ValueError):
        champ, meta = None, {}
    fam = get_family(model.family)
    policy = fam.reference_policy(locate(champ.artifact_path)) if champ is not None else None
    return {"name": name, "family": model.family, "description": model.description,
            "records": record_counts(session, name), "reference_policy": policy,
            "registered": "registration" in meta, "dataset": (meta.get("dataset") or {}).get("name"),
            "champion": champ}


__all__ = ["AlreadyRegistered", "Registered", "Registration", "RegistrationError", "describe", "load_recipe", "read_records",
           "record_counts", "register", "save_upload", "upload_status", "uploads_dir"]
