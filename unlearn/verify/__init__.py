"""Verifiers: score a candidate against the retrain reference before it may be promoted."""

from unlearn.verify.criteria import CRITERIA, CriterionSpec, Evidence, criteria_for, register_criterion
from unlearn.verify.verdict import Criterion, Verdict, check, criterion

__all__ = ["CRITERIA", "Criterion", "CriterionSpec", "Evidence", "Verdict", "check", "criteria_for", "criterion",
           "register_criterion"]
