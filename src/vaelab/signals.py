"""Ctrl-C (SIGINT) and SIGTERM that end a command cleanly, training among them.

A ``KeyboardInterrupt`` raised while Keras' ``fit`` runs is usually swallowed: Keras
converts each batch's logs inside a bare ``except:``. So during ``fit``
(:func:`deferred`) the handler only records the signal, training's ``StopOnSignal``
callback (``vaelab.training.interrupts``) stops it at the next batch or step-group end,
and :func:`deferred` raises :class:`Interrupted` once ``fit`` has returned (or on entry,
for an interrupt lost before the fit). Outside ``fit`` the handler raises
:class:`Interrupted` at once. ``Interrupted`` derives from ``BaseException`` (like
``KeyboardInterrupt``), so ``except Exception`` does not swallow it, and every atomic
write's ``finally`` removes its temporary file on the way out.

The handler raises wherever the main thread is when the signal lands, and that may be a
place that drops exceptions: a garbage-collector callback (JAX registers one; Python
prints "Exception ignored" and goes on) or a bare ``except``. A command therefore calls
:func:`check` at its safe points (each round of a wait, before writing its results), and
:func:`handled` calls it when the command returns: an interrupt raised once ends the
command even when its first raise was lost.
"""

from __future__ import annotations

import contextlib
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_state = {"deferring": False, "pending": None, "command": False, "raised": None}


class Interrupted(BaseException):
    """The process got SIGINT or SIGTERM; ``exit_status`` is ``128 + signal number``.

    ``checkpoint`` says what a resumed run would continue from (set by training).
    """

    def __init__(self, signum: int, checkpoint: str | None = None):
        super().__init__(signum)
        self.signum = signum
        self.checkpoint = checkpoint

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def _interrupt(signum: int) -> Interrupted:
    if _state["command"]:  # a command exits now: later signals are ignored
        _state["raised"] = signum
    return Interrupted(signum)


def _handler(signum, frame):
    if _state["deferring"]:
        if _state["pending"] is None:
            _state["pending"] = signum
        return
    if _state["raised"] is not None:
        return
    raise _interrupt(signum)


def check() -> None:
    """Raise :class:`Interrupted` again if the running command was interrupted but the
    exception never reached it (it was raised inside a callback or ``except`` that dropped
    it). A no-op outside a command and when no signal came."""
    if _state["command"] and _state["raised"] is not None:
        raise Interrupted(_state["raised"])


def pending() -> int | None:
    """The signal received while deferring, if any."""
    return _state["pending"]


@contextlib.contextmanager
def handled(command: bool = False):
    """SIGINT and SIGTERM raise :class:`Interrupted` (main thread only; elsewhere a no-op).

    ``command=True`` is for a whole CLI command: once one interrupt has been raised the
    process is on its way out, so further signals are ignored until it exits (a second
    Ctrl-C must not turn exit status 130 into a traceback), and a command that returns
    after an interrupt whose exception was lost raises it then (:func:`check`). Otherwise
    the previous handlers come back on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    if command:
        _state.update(command=True, raised=None)
    try:
        yield
        if command:
            check()
    finally:
        if command and _state["raised"] is not None:
            for s in SIGNALS:
                signal.signal(s, signal.SIG_IGN)
        else:
            for s, handler in previous.items():
                signal.signal(s, handler)
        if command:
            _state["command"] = False


@contextlib.contextmanager
def deferred():
    """Record SIGINT/SIGTERM instead of raising; raise :class:`Interrupted` at the end."""
    check()  # an interrupt lost before the fit ends the command before it starts
    with handled():
        _state.update(deferring=True, pending=None)
        try:
            yield
        finally:
            _state["deferring"] = False
        signum, _state["pending"] = _state["pending"], None
        if signum is not None:
            raise _interrupt(signum)
