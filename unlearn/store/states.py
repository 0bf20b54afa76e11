"""Every status the service stores, as `StrEnum`s, with the final sets defined once.

A `StrEnum` member compares equal to its string, so rows written before these types existed, and
JSON clients, read the same values.
"""

from __future__ import annotations

from enum import StrEnum


class RequestStatus(StrEnum):
    PENDING_REVIEW = "pending_review"  # held for an operator's approval before any work
    RECEIVED = "received"  # accepted; waiting for the batch window
    QUEUED = "queued"  # in a job that has not started
    RUNNING = "running"  # its job is unlearning
    VERIFYING = "verifying"  # its job is verifying or promoting the candidate
    # Every method of the family's chain failed its gate, or the cost budget or deadline stopped the chain:
    # an operator decides (retry, or reject). Open: the overdue clock keeps running.
    NEEDS_REVIEW = "needs_review"
    COMPLETED = "completed"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELED = "canceled"


class TargetStatus(StrEnum):
    PENDING = "pending"
    NEEDS_REVIEW = "needs_review"  # its job's chain ended without a passing candidate: an operator decides
    DONE = "done"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELED = "canceled"


class JobStage(StrEnum):
    QUEUED = "queued"
    UNLEARNING = "unlearning"
    VERIFYING = "verifying"
    PROMOTING = "promoting"
    DONE = "done"
    FAILED = "failed"


class VersionStatus(StrEnum):
    CANDIDATE = "candidate"
    PROMOTED = "promoted"
    REJECTED = "rejected"
    RETIRED = "retired"
    QUARANTINED = "quarantined"  # its files do not match its manifest: never used again


REQUEST_FINAL = frozenset({RequestStatus.COMPLETED, RequestStatus.REJECTED, RequestStatus.FAILED,
                           RequestStatus.CANCELED})
REQUEST_OPEN = frozenset(set(RequestStatus) - REQUEST_FINAL)
# Not yet running: the only statuses a request may be canceled from.
REQUEST_CANCELABLE = frozenset({RequestStatus.PENDING_REVIEW, RequestStatus.RECEIVED, RequestStatus.QUEUED})
TARGET_FINAL = frozenset({TargetStatus.DONE, TargetStatus.REJECTED, TargetStatus.FAILED, TargetStatus.CANCELED})
JOB_ACTIVE = frozenset({JobStage.UNLEARNING, JobStage.VERIFYING, JobStage.PROMOTING})
JOB_FINAL = frozenset({JobStage.DONE, JobStage.FAILED})

__all__ = ["JOB_ACTIVE", "JOB_FINAL", "REQUEST_CANCELABLE", "REQUEST_FINAL", "REQUEST_OPEN", "TARGET_FINAL",
           "JobStage", "RequestStatus", "TargetStatus", "VersionStatus"]
