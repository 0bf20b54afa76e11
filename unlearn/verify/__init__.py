"""Verifiers: score a candidate against the retrain reference before it may be promoted."""

from unlearn.verify.verdict import Criterion, Verdict, check, criterion

__all__ = ["Criterion", "Verdict", "check", "criterion"]
