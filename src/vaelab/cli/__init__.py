"""The ``vaelab`` command line: :mod:`~vaelab.cli.parser` defines it, :mod:`~vaelab.cli.commands`
runs it. ``main(argv)`` does both (``python -m vaelab``, the tests); the console script
enters through :mod:`vaelab_cli`, which parses before the package (and Keras) loads."""

from __future__ import annotations

import os
import sys

BROKEN_PIPE = 141  # 128 + SIGPIPE: the status of a program that signal ended


def main(argv: list[str] | None = None, before_run=None) -> int:
    """Parse ``argv`` (default: the command line) and run the command; the exit status.

    ``before_run`` is called between the two (the console script finishes ``import vaelab``
    there). When the reader of standard output goes away (``vaelab … | head``), the rest of
    the output is dropped quietly and the status is :data:`BROKEN_PIPE`.
    """
    from vaelab.cli.parser import build_parser

    try:
        args = build_parser().parse_args(argv)
        if before_run is not None:
            before_run()
        return run(args)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that Python's flush at exit stays quiet
        return BROKEN_PIPE


def run(args) -> int:
    """Run arguments :func:`vaelab.cli.parser.build_parser` parsed; the exit status."""
    from vaelab.cli import commands

    return commands.run(args)
