"""Unlearning methods by name. A new method is one file here plus one line in `METHODS`, or an entry
point in the group "unlearn.methods" of another package, or `register_method` at run time.

The file defines `run(task) -> dict`, its parameters as a `MethodParams` subclass, and a `MethodSpec`
(`unlearn.methods.base`) that names them with the families it applies to.

Each entry maps a method name to "module:attribute" of its `MethodSpec`; modules are
imported on first use so that a CPU demo of one family does not import the others.
"""

from __future__ import annotations

from unlearn.methods.base import MethodError, MethodParams, MethodSpec, ParamsError, UnlearnTask
from unlearn.plugins import Registry

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
    "esd": "unlearn.methods.esd:SPEC",
}


_REGISTRY = Registry("method", "unlearn.methods", METHODS)


def register_method(name: str, target: str) -> None:
    """Add a method from outside the package ("module:attribute" of a MethodSpec), e.g. a plugin
    named in `UNLEARN_EXTRA_METHODS`."""
    _REGISTRY.register(name, target)


def method_names() -> list[str]:
    """Every method known: this package's, those registered at run time, and installed entry points."""
    return _REGISTRY.names()


def get_method(name: str) -> MethodSpec:
    """The method registered as `name`. Raises KeyError for an unknown name."""
    return _REGISTRY.load(name)


def methods_for(family: str) -> list[str]:
    """The methods that apply to models of `family`."""
    return [n for n in method_names() if get_method(n).applies_to(family)]


__all__ = ["METHODS", "MethodError", "MethodParams", "MethodSpec", "ParamsError", "UnlearnTask", "get_method",
           "method_names", "methods_for", "register_method"]
