"""Prometheus metrics, read from the database at scrape time (the database is the source of truth,
so every API process reports the same numbers)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func
from sqlmodel import Session, col, select

from unlearn.settings import Settings
from unlearn.sla import at_risk_clause, overdue_clause
from unlearn.store.models import ComplianceCheck, DeletionRequest, ModelVersion, UnlearningJob, utcnow
from unlearn.store.states import VersionStatus


class _DatabaseCollector:
    def __init__(self, session: Session, settings: Settings) -> None:
        self.session, self.settings = session, settings

    def collect(self):
        s, now = self.session, utcnow()
        by_status = GaugeMetricFamily("unlearn_requests", "Deletion requests by status", labels=["status"])
        for status, n in s.exec(select(DeletionRequest.status, func.count()).group_by(DeletionRequest.status)):
            by_status.add_metric([status], n)
        yield by_status
        overdue = s.exec(select(func.count()).select_from(DeletionRequest).where(overdue_clause(now))).one()
        at_risk = s.exec(select(func.count()).select_from(DeletionRequest).where(
            at_risk_clause(now, self.settings.at_risk_days))).one()
        yield GaugeMetricFamily("unlearn_requests_overdue", "Open requests past their due date", value=overdue)
        yield GaugeMetricFamily("unlearn_requests_at_risk", "Requests not yet running with few days left",
                                value=at_risk)
        depth = GaugeMetricFamily("unlearn_queue_depth", "Jobs waiting, by queue", labels=["queue"])
        for queue, n in s.exec(select(UnlearningJob.queue, func.count()).where(UnlearningJob.stage == "queued")
                               .group_by(UnlearningJob.queue)):
            depth.add_metric([queue], n)
        yield depth
        stages = GaugeMetricFamily("unlearn_jobs", "Jobs by stage", labels=["stage"])
        for stage, n in s.exec(select(UnlearningJob.stage, func.count()).group_by(UnlearningJob.stage)):
            stages.add_metric([stage], n)
        yield stages
        checks = GaugeMetricFamily("unlearn_compliance_checks", "Continuous-compliance checks by result",
                                   labels=["result"])
        for passed, n in s.exec(select(ComplianceCheck.passed, func.count()).group_by(ComplianceCheck.passed)):
            checks.add_metric(["pass" if passed else "fail"], n)
        yield checks
        regressions = s.exec(select(func.count()).select_from(ComplianceCheck).where(
            ComplianceCheck.regression == True)).one()  # noqa: E712
        yield GaugeMetricFamily("unlearn_compliance_regressions", "Champions that failed a re-check after passing "
                                "(alert on any increase)", value=regressions)
        quarantined = s.exec(select(func.count()).select_from(ModelVersion).where(
            ModelVersion.status == VersionStatus.QUARANTINED)).one()
        yield GaugeMetricFamily("unlearn_versions_quarantined", "Versions whose files no longer match their "
                                "manifest (alert on any increase)", value=quarantined)
        durations = SummaryMetricFamily("unlearn_job_duration_seconds", "Finished jobs, start to finish",
                                        labels=["method"])
        done = s.exec(select(UnlearningJob.method, UnlearningJob.started_at, UnlearningJob.finished_at).where(
            UnlearningJob.stage == "done", col(UnlearningJob.started_at).is_not(None))).all()
        per: dict[str, list[float]] = {}
        for method, started, finished in done:
            per.setdefault(method, []).append((finished - started).total_seconds())
        for method, secs in per.items():
            durations.add_metric([method], count_value=len(secs), sum_value=sum(secs))
        yield durations


def render_metrics(session: Session, settings: Settings) -> tuple[bytes, str]:
    reg = CollectorRegistry()
    reg.register(_DatabaseCollector(session, settings))
    return generate_latest(reg), CONTENT_TYPE_LATEST
