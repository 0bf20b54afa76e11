"""Methods for fault-injection tests, loaded into real workers through UNLEARN_EXTRA_METHODS."""

from __future__ import annotations

import os
import shutil
import signal
import time

from unlearn.artifacts import read_meta, write_meta
from unlearn.methods.base import MethodSpec, UnlearnTask
from unlearn.methods.retrain import run as retrain


def _slow(task: UnlearnTask) -> dict:
    """Retrain, after sleeping `sleep_s` while reporting progress (a long GPU job, in miniature)."""
    total = float(task.params.get("sleep_s", 10))
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < total:
        task.progress(elapsed / total * 0.5, "sleeping")
        time.sleep(0.2)
    return retrain(task)


def _weak(task: UnlearnTask) -> dict:
    """A method that misses: its candidate is the base model unchanged (it fails any forgetting gate)."""
    shutil.copytree(task.base_dir, task.out_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns("manifest.json"))
    write_meta(task.out_dir, {**read_meta(task.base_dir), "method": "weak"})
    return {}


def _crash(task: UnlearnTask) -> dict:
    raise RuntimeError("simulated crash in the method")


def _die(task: UnlearnTask) -> dict:
    os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies, as under the OOM killer
    return {}


FAMILIES = ("classifier",)
SLOW = MethodSpec(name="slow", families=FAMILIES, run=_slow, exact=True)
CRASH = MethodSpec(name="crash", families=FAMILIES, run=_crash)
WEAK = MethodSpec(name="weak", families=FAMILIES, run=_weak)
DIE = MethodSpec(name="die", families=FAMILIES, run=_die)
PLUGINS = {"slow": "tests.fault_methods:SLOW", "weak": "tests.fault_methods:WEAK", "crash": "tests.fault_methods:CRASH", "die": "tests.fault_methods:DIE"}
