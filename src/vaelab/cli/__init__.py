"""The ``vaelab`` command line: :mod:`~vaelab.cli.parser` defines it, :mod:`~vaelab.cli.commands`
runs it. ``main(argv)`` does both (``python -m vaelab``, the tests); the console script
enters through :mod:`vaelab_cli`, which parses before the package (and Keras) loads."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the command line) and run the command; the exit status."""
    from vaelab.cli.parser import build_parser

    return run(build_parser().parse_args(argv))


def run(args) -> int:
    """Run arguments :func:`vaelab.cli.parser.build_parser` parsed; the exit status."""
    from vaelab.cli import commands

    return commands.run(args)
