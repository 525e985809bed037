"""The ``vaelab`` command: parses arguments and calls one function per command.

Errors a user can cause (bad values, unusable data) are printed as one line
and exit with status 2; nothing else happens at import time.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from vaelab import data


class UsageError(ValueError):
    """A value given on the command line or to the API is not usable."""


def _data_fetch(args) -> None:
    origin = data.fetch_mnist()
    where = data.cache_dir()
    if origin == "cache":
        print(f"MNIST already in {where} (all four SHA-256 checksums verified)")
    else:
        print(f"MNIST fetched from {origin} into {where} (all four SHA-256 checksums verified)")


def _data_info(args) -> None:
    folder, origin = data.resolve_data_dir(args.data_dir)
    (x_train, y_train), (x_test, y_test) = data.load_idx_dir(folder)
    print(f"folder:        {folder} ({origin})")
    print(f"train:         {x_train.shape[0]} images of {x_train.shape[1]}x{x_train.shape[2]}")
    print(f"test:          {x_test.shape[0]} images of {x_test.shape[1]}x{x_test.shape[2]}")
    for split, labels in (("train", y_train), ("test", y_test)):
        values, counts = np.unique(labels, return_counts=True)
        histogram = " ".join(f"{v}:{c}" for v, c in zip(values, counts))
        print(f"{(split + ' labels:'):<15}{histogram}")
    status = data.checksum_status(folder)
    if all(s == "ok" for s in status.values()):
        print("checksums:     verified MNIST (all four SHA-256 match)")
    else:
        detail = ", ".join(f"{name} {s}" for name, s in status.items())
        print(f"checksums:     not verified MNIST ({detail})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaelab", description="Learn, train and diagnose variational autoencoders.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data_parser = commands.add_parser("data", help="fetch or inspect the MNIST files")
    data_commands = data_parser.add_subparsers(dest="data_command", required=True,
                                               metavar="SUBCOMMAND")
    fetch = data_commands.add_parser(
        "fetch", help="put verified MNIST in the user cache (no-op when it is there)")
    fetch.set_defaults(func=_data_fetch)
    info = data_commands.add_parser("info", help="counts, label histogram and checksum status")
    info.add_argument("--data-dir", help="a folder of MNIST-format IDX files (default: the cache)")
    info.set_defaults(func=_data_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (UsageError, data.DataError) as exc:
        print(f"vaelab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vaelab: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
