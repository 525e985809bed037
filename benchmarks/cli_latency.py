"""How long the ``vaelab`` command takes to answer without running anything.

    python benchmarks/cli_latency.py [--repeat 5] [--json out.json]

Wall time (median of ``--repeat``, each a fresh process) of the console script for
``--help``, ``train --help`` and a mistyped option, against ``python -m vaelab --help``,
which imports the whole package (Keras and JAX) first, as the console script did before
it parsed ahead of the import (vaelab 0.2). Measured in one run, interleaved.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = {
    "vaelab --help": ["{vaelab}", "--help"],
    "vaelab train --help": ["{vaelab}", "train", "--help"],
    "vaelab train --epoch 3 (mistyped)": ["{vaelab}", "train", "--epoch", "3"],
    "python -m vaelab --help (imports the package first)": [sys.executable, "-m", "vaelab",
                                                             "--help"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    vaelab = shutil.which("vaelab") or str(Path(sys.executable).with_name("vaelab"))
    seconds = {name: [] for name in CASES}
    for _ in range(args.repeat):
        for name, command in CASES.items():
            command = [part.format(vaelab=vaelab) for part in command]
            started = time.perf_counter()
            subprocess.run(command, capture_output=True, timeout=120)
            seconds[name].append(time.perf_counter() - started)
    results = {name: round(statistics.median(values), 3) for name, values in seconds.items()}
    for name, value in results.items():
        print(f"{value:7.3f} s  {name}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
