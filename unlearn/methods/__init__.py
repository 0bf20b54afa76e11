"""Unlearning methods by name. A new method is one file here plus one line in `METHODS`.

Each entry maps a method name to "module:attribute" of its `MethodSpec`; modules are
imported on first use so that a CPU demo of one family does not import the others.
"""

from __future__ import annotations

import importlib

from unlearn.methods.base import MethodError, MethodSpec, UnlearnTask

METHODS: dict[str, str] = {
    "retrain": "unlearn.methods.retrain:SPEC",
    "acu": "unlearn.methods.acu:SPEC",
    "laf": "unlearn.methods.laf:SPEC",
    "ssd": "unlearn.methods.ssd:SPEC",
    "ga": "unlearn.methods.ga:SPEC",
    "ga_gdr": "unlearn.methods.ga:SPEC_GDR",
    "ga_klr": "unlearn.methods.ga:SPEC_KLR",
    "npo": "unlearn.methods.npo:SPEC",
    "npo_gdr": "unlearn.methods.npo:SPEC_GDR",
    "npo_klr": "unlearn.methods.npo:SPEC_KLR",
    "whp": "unlearn.methods.whp:SPEC",
    "sfd": "unlearn.methods.sfd:SPEC",
    "erasure-finetune": "unlearn.methods.erasure_finetune:SPEC",
}


def register_method(name: str, target: str) -> None:
    """Add a method from outside the package ("module:attribute" of a MethodSpec), e.g. a plugin
    named in `UNLEARN_EXTRA_METHODS`."""
    if ":" not in target:
        raise ValueError(f"method target {target!r} must look like 'module:attribute'")
    METHODS[name] = target


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    module, attr = METHODS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def methods_for(family: str) -> list[str]:
    return [n for n in METHODS if family in get_method(n).families]


__all__ = ["METHODS", "MethodError", "MethodSpec", "UnlearnTask", "get_method", "methods_for", "register_method"]
