"""The autograder of the tutorial's exercises (``vaelab tutorial check``).

Two sides that never mix: the grader (:mod:`~vaelab.teaching.grading.grader`, with
:mod:`~vaelab.teaching.grading.exercises`, :mod:`~vaelab.teaching.grading.verdicts` and
:mod:`~vaelab.teaching.grading.reports`) draws the inputs, decides every verdict and writes the
results, and never runs student code; the probes (:mod:`~vaelab.teaching.grading.probes`) run
student code inside a sandbox (:mod:`~vaelab.teaching.grading.sandbox`) and only report what it
computed (:mod:`~vaelab.teaching.grading.wire`). ``docs/teaching.md`` has the threat model.

The grader's names are loaded on first use, so a probe imports only what it needs.
"""

import importlib

_EXPORTS = {"EXERCISES": "exercises", "Exercise": "exercises", "Result": "verdicts",
            "check_file": "grader", "grade": "grader", "settings": "grader", "main": "grader",
            "DEFAULT_TIMEOUT": "grader"}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"vaelab.teaching.grading.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'vaelab.teaching.grading' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
