"""Unlearning methods by name. A new method is one file here plus one line in `METHODS`.

Each entry maps a method name to "module:attribute" of its `MethodSpec`; modules are
imported on first use so that a CPU demo of one family does not import the others.
"""

from __future__ import annotations

import importlib

from unlearn.methods.base import MethodError, MethodSpec, UnlearnTask

METHODS: dict[str, str] = {
    "retrain": "unlearn.methods.retrain:SPEC",
    "sfd": "unlearn.methods.sfd:SPEC",
    "erasure-finetune": "unlearn.methods.erasure_finetune:SPEC",
}


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    module, attr = METHODS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def methods_for(family: str) -> list[str]:
    return [n for n in METHODS if family in get_method(n).families]


__all__ = ["METHODS", "MethodError", "MethodSpec", "UnlearnTask", "get_method", "methods_for"]
