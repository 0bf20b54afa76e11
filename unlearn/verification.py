"""Verifying a candidate the way the service does, for the job runner and continuous compliance alike.

`verify_candidate` is the one policy: which gates apply (the family's defaults, the method's own,
then the deployment's and the model's overrides), whether a retrain-from-scratch reference is needed
and where it is cached, which extra criteria are registered for the family, and the lineage plots
(MUSE's C5 and C6 analogues). The report it returns stores the gates it applied, so that a
certificate states the thresholds the version was verified under, not today's settings.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import Session

from unlearn.artifacts import locate, publish, read_meta, record
from unlearn.contracts import Scope
from unlearn.families import get_family
from unlearn.identity import sha256_ids
from unlearn.methods import get_method, method_names
from unlearn.registry import (
    ArtifactIntegrityError,
    artifact_dir,
    verify_artifact,
    version_label,
    write_manifest,
)
from unlearn.settings import Settings
from unlearn.store.models import Model, ModelVersion
from unlearn.verify import Criterion, Evidence, Verdict, criteria_for
from unlearn.verify.muse import history_plots

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- gates

def gate_overrides(settings: Settings, model: Model) -> dict[str, float]:
    """Only the gates someone set (deployment-wide, then per model): the verifiers own the defaults."""
    deployment = {"forget_acc_margin": settings.gate_forget_acc_margin,
                  "test_acc_margin": settings.gate_test_acc_margin, "mia_rel_tol": settings.gate_mia_rel_tol}
    return {**{k: v for k, v in deployment.items() if v is not None}, **(model.thresholds or {})}


def gates_for(family: str, method: str | None, scope: Scope) -> dict[str, float]:
    """The gates a candidate of `family` made by `method` is held to for a request of `scope`, before
    overrides: the family's defaults, the registered criteria's, then the method's own (`MethodSpec.gates`)."""
    method_gates = get_method(method).gates if method in method_names() else {}
    criteria = {k: v for spec in criteria_for(family) for k, v in spec.gate_defaults.items()}
    return {**criteria, **get_family(family).gates(scope, method_gates)}


# ---------------------------------------------------------------- the retrain reference

def _reference_dir(settings: Settings, model_name: str, keep_ids: list[str]) -> Path:
    return artifact_dir(settings.resolved_artifact_root, model_name, "references", sha256_ids(keep_ids)[:24])


def reference_model(settings: Settings, model_name: str, base: ModelVersion, keep_ids: list[str], *,
                    device: str, family: str) -> tuple[Path, str | None]:
    """The exact retrain-from-scratch model on `keep_ids`, cached by the hash of that set with a manifest
    of its own. A cached folder that no longer matches its manifest (or has none) is discarded and
    rebuilt; the second value then says why, for the report. Raises `ArtifactIntegrityError` when
    `base`, which it is retrained from, does not match its manifest."""
    folder = _reference_dir(settings, model_name, keep_ids)
    warning = None
    _fetch_cached(folder)
    if folder.exists():
        try:
            verify_artifact(folder, f"reference {folder.name} of {model_name}")
            return folder, None
        except ArtifactIntegrityError as exc:
            warning = f"{exc}: discarded and rebuilt"
            log.warning("%s", warning)
            _discard(folder)
    verify_artifact(locate(base.artifact_path), version_label(base), version_id=base.id)
    sweep_partial_references(folder.parent, older_than_s=settings.lease_s)
    tmp = folder.with_name(folder.name + f".tmp-{time.time_ns()}")
    try:
        get_family(family).retrain(locate(base.artifact_path), keep_ids, tmp, device=device)
        write_manifest(tmp)
        if not folder.exists():
            tmp.rename(folder)
            _share_cached(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder, warning


def _fetch_cached(folder: Path) -> None:
    """A reference another host computed, from the store (when one is in use and has it)."""
    if not folder.exists():
        try:
            locate(record(folder))
        except (FileNotFoundError, OSError) as exc:  # not there, or unreadable: computed here instead
            log.debug("reference %s not taken from the store: %s", folder.name, exc)


def _share_cached(folder: Path) -> None:
    """Offer a reference computed here to the other hosts; only a cache, so a failure is a warning."""
    try:
        publish(folder)
    except OSError as exc:
        log.warning("could not publish reference %s: %s", folder.name, exc)


def reference_for(settings: Settings, model: Model, base: ModelVersion, keep_ids: list[str],
                  policy: str) -> tuple[Path | None, str | None]:
    """The reference a candidate is verified against under the model's reference `policy`:
    "retrain": the exact retrain on `keep_ids` (`reference_model`); "precomputed": the folder supplied at
    registration (`unlearn.json["reference"]["dir"]`), checked against its manifest; "holdout" and
    "none": no reference (the family gates against holdout records and the original, or its teacher).
    Raises `ArtifactIntegrityError` when a folder does not match its manifest, ValueError for an
    unknown policy."""
    if policy == "retrain":
        return reference_model(settings, model.name, base, keep_ids, device=settings.device, family=model.family)
    if policy == "precomputed":
        folder = Path((read_meta(locate(base.artifact_path)).get("reference") or {}).get("dir") or "")
        verify_artifact(folder, f"precomputed reference of {model.name}")
        return folder, None
    if policy in ("holdout", "none"):
        return None, None
    raise ValueError(f"model {model.name!r} names an unknown reference policy {policy!r}")


def _discard(folder: Path) -> None:
    """Move a corrupt cache folder out of the way (one rename, so that no reader sees it half-deleted)."""
    gone = folder.with_name(folder.name + f".corrupt-{time.time_ns()}")
    try:
        folder.rename(gone)
    except FileNotFoundError:  # another process discarded it first
        return
    shutil.rmtree(gone, ignore_errors=True)


def seed_reference(settings: Settings, model_name: str, keep_ids: list[str], source: Path) -> None:
    """Cache `source` as the reference for `keep_ids` (an exact method's candidate is that retrain)."""
    folder = _reference_dir(settings, model_name, keep_ids)
    if not folder.exists():
        sweep_partial_references(folder.parent, older_than_s=settings.lease_s)
        tmp = folder.with_name(folder.name + f".tmp-{time.time_ns()}")
        try:  # a copy cut short (a full disk) leaves nothing behind for the next attempt to trip on
            shutil.copytree(source, tmp)
            write_manifest(tmp)  # checked before every reuse, like a version
            tmp.rename(folder)
            _share_cached(folder)
        except OSError as exc:  # only a cache: the verifier retrains the reference when it needs it
            log.warning("could not cache reference %s of %s: %s", folder.name, model_name, exc)
            shutil.rmtree(tmp, ignore_errors=True)


def sweep_partial_references(references: Path, *, older_than_s: float) -> list[Path]:
    """Remove the half-written reference folders (`*.tmp-*`) under `references` that nothing has written
    to for `older_than_s` (the lease: a live writer's job would have lost it by then); returns them.
    They are left by a worker that died or a disk that filled mid-write, and only take space."""
    cutoff = time.time() - older_than_s
    removed = []
    for tmp in references.glob("*.tmp-*") if references.is_dir() else ():
        try:
            newest = max(p.stat().st_mtime for p in (tmp, *tmp.rglob("*")))
        except OSError:  # removed meanwhile by another sweep
            continue
        if newest < cutoff:
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


# ---------------------------------------------------------------- lineage plots

def lineage_plots(session: Session, parent_id: str | None, family: str, report: dict[str, Any], forgotten: int,
                  report_dir: Path) -> dict[str, str]:
    """C5 (utility against the forget set's size) and C6 (over sequential requests) for this lineage,
    drawn from the verdicts its versions already stored plus this one."""
    history = [{"forgotten": forgotten, "verdict": report}]
    v = session.get(ModelVersion, parent_id) if parent_id else None
    while v is not None:
        if v.metrics.get("criteria"):
            history.append({"forgotten": len(v.excluded_ids), "verdict": v.metrics})
        v = session.get(ModelVersion, v.parent_id) if v.parent_id else None
    declared = get_family(family).lineage_criteria
    names = [c for c in declared if c in report["criteria"]] or list(report["criteria"])[:3]
    try:
        return history_plots(history[::-1], report_dir, names)
    except Exception:  # a plot is a convenience; it never fails a verification
        log.warning("lineage plots failed", exc_info=True)
        return {}


# ---------------------------------------------------------------- indistinguishable requests

def exactness_rule(verdict: Verdict, method: str | None) -> dict[str, Any] | None:
    """Where the family's membership test found the forget set indistinguishable from the retrain before
    unlearning (`verdict.info["indistinguishable"]`, e.g. `unlearn.verify.ulira`), no verifier can tell an
    approximate method's forgetting from doing nothing, so its passing verdict is no evidence: the request is
    certified by the method's exactness alone. Appends the gated row "exact_method" (passes only for a method
    registered with `exact=True`: retrain, acu); for an exact method, the rows the family names in
    `seed_noise_criteria` are shown, not gated (`Criterion.gated`). Returns the statement for the report and the
    certificate; returns None (and changes nothing) where the request was distinguishable."""
    found = verdict.info.get("indistinguishable")
    if not found:
        return None
    exact = method in method_names() and get_method(method).exact
    if exact:
        # The family's rows that compare the forget set with the one reference (`seed_noise_criteria`) measure
        # only seed-to-seed noise here: an exact retrain with another seed fails them as often as chance has
        # it. They are shown, not gated; the exactness certifies (a gate must not refuse exact retrains).
        for c in verdict.criteria:
            if c.name in found.get("seed_noise_criteria", ()) and c.decides:
                c.gated = False
                c.detail = (f"{c.detail}; not gated: the request is {found['statement']}, and an exact method's "
                            "gap from the one reference is seed-to-seed noise")
    verdict.criteria.append(Criterion(
        name="exact_method", value=1.0 if exact else 0.0, threshold=1.0, op=">=", passed=bool(exact),
        detail=(f"{found['statement']} (separation {found['separation']:.2f} < {found['min_separation']:g} seed-to-seed "
                f"spreads): certified by the exactness of method {method!r}" if exact else
                f"{found['statement']}: the verifier cannot tell method {method!r}'s forgetting from doing nothing, "
                "and only an exact method (retrain, acu) certifies such a request")))
    return {**found, "method": method, "certified_by": f"exactness of method {method!r}" if exact else None}


# ---------------------------------------------------------------- the policy

@dataclass
class Verification:
    verdict: Verdict
    report: dict[str, Any]  # verdict.to_dict() plus the gates applied, plots, timings, the reference used
    reference: Path | None


def verify_candidate(session: Session, settings: Settings, model: Model, *, candidate_dir: Path, base: ModelVersion,
                     method: str | None, forget_ids: list[str], keep_ids: list[str], scope: Scope,
                     report_dir: Path, parent_id: str | None = None,
                     new_forget_ids: list[str] | None = None) -> Verification:
    """Score `candidate_dir` as the service gates it, and write `verdict.json` into `report_dir`.

    `forget_ids`: every sample forgotten in the lineage so far (the candidate must behave as a model
    that never saw any of them); `keep_ids`: the training samples it still holds. `method`: the method
    that made the candidate (its declared gates apply), or None for a model as trained.
    The reference is the exact retrain on `keep_ids` from `base`, built (or read from the cache) only
    when the family gates against one.

    `new_forget_ids`: the samples this candidate forgot since `base` (a job's; None for a compliance
    check). With them, the candidate of an exact method whose family can check the update against the
    base's sufficient statistics (`Family.exact_update_check`: ACU) is verified that way, with no
    reference: a burst of such jobs costs what the updates cost. The periodic compliance check still
    compares the champion with the retrain."""
    t0 = time.perf_counter()
    fam = get_family(model.family)
    spec = get_method(method) if method in method_names() else None
    if new_forget_ids is not None and spec is not None and spec.exact and not spec.is_reference:
        quick = fam.exact_update_check(candidate_dir, locate(base.artifact_path), new_forget_ids,
                                       device=settings.device)
        if quick is not None:
            return _exact_update_verification(quick, method, report_dir, time.perf_counter() - t0)
    extra = criteria_for(model.family)
    overrides = gate_overrides(settings, model)
    gates = {**gates_for(model.family, method, scope), **overrides}
    policy = fam.reference_policy(locate(base.artifact_path))
    ref, ref_warning = reference_for(settings, model, base, keep_ids, policy)
    report_dir.mkdir(parents=True, exist_ok=True)
    verdict = fam.verify(candidate_dir, ref, forget_ids, keep_ids, scope, device=settings.device, thresholds=gates,
                         report_dir=report_dir)
    # A criterion the family does not declare is still gated (the verdict counts it), but it is missing
    # from what the family documents; say so in the report instead of failing a deletion request on it.
    undeclared = sorted({c.name for c in verdict.criteria} - set(fam.criteria))
    if undeclared:
        log.warning("the %s family's verifier reported criteria it does not declare: %s", model.family,
                    ", ".join(undeclared))
    evidence = Evidence(family=model.family, candidate_dir=candidate_dir, reference_dir=ref, forget_ids=forget_ids,
                        retain_ids=keep_ids, scope=scope, thresholds=gates, device=settings.device)
    verdict.criteria.extend(spec.check(evidence) for spec in extra)
    indistinguishable = exactness_rule(verdict, method)
    report = verdict.to_dict()
    if indistinguishable:
        report["indistinguishable"] = indistinguishable
    report["plots"].update(lineage_plots(session, parent_id, model.family, report, len(forget_ids), report_dir))
    if undeclared:
        report["undeclared_criteria"] = undeclared
    if ref_warning:
        report["reference_rebuilt"] = ref_warning
    # A reference method's candidate is the very retrain the verifier compares against (the job seeds
    # the reference from it), so every difference is 0 by construction: the table is kept for the record
    # but is no evidence. A family that gates against no reference still checks it for real.
    by_construction = policy == "retrain" and method in method_names() and get_method(method).is_reference
    report["exact_by_construction"] = bool(by_construction)
    if by_construction:
        report["note"] = (f"exact by construction: method {method!r} retrains from scratch without the forgotten "
                          "samples, and that retrain is the verifier's reference; its comparisons are vacuous")
    report.update({"method": method, "gates": gates, "gate_overrides": overrides,
                   "verify_seconds": round(time.perf_counter() - t0, 4), "reference": str(ref) if ref else None,
                   "reference_policy": policy})
    (report_dir / "verdict.json").write_text(json.dumps(report, indent=2, default=str))
    return Verification(verdict=verdict, report=report, reference=ref)


def _exact_update_verification(verdict: Verdict, method: str, report_dir: Path, seconds: float) -> Verification:
    report = verdict.to_dict()
    report.update({"method": method, "gates": {c.name: c.threshold for c in verdict.criteria},
                   "gate_overrides": {}, "verify_seconds": round(seconds, 4), "reference": None,
                   "reference_policy": "exact_update", "exact_by_construction": False,
                   "note": f"{method} is exact: its update was checked against the parent's sufficient statistics "
                           "(no retrain); the periodic compliance check compares the champion with the retrain"})
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "verdict.json").write_text(json.dumps(report, indent=2, default=str))
    return Verification(verdict=verdict, report=report, reference=None)


__all__ = ["Verification", "exactness_rule", "gate_overrides", "gates_for", "lineage_plots", "reference_for", "reference_model",
           "seed_reference", "verify_candidate"]
