"""Epoch time of one run on 1 device, 1 process × 2 devices and 2 processes × 1 device.

    python benchmarks/scaling.py [--batch-size 32 256] [--train-size 10000] [--epochs 6]
                                 [--out DIR] [--json out.json]

Each setting trains the lab's VAE (784-512-32) on the first ``--train-size`` MNIST
training images through the ``vaelab`` command, in fresh processes:

- ``1 device``: ``vaelab train`` (the single-device path, steps grouped into one
  compiled ``lax.scan`` call);
- ``1 process × 2 devices``: ``XLA_FLAGS=--xla_force_host_platform_device_count=2
  vaelab train --distribute`` (one compiled call per step, each batch split in two);
- ``2 processes × 1 device``: ``vaelab launch --num-processes 2 -- train`` (the same,
  with the gradients all-reduced over Gloo between the processes).

The steady epoch time is ``(T(epochs) − T(1)) / (epochs − 1)``, where ``T`` is the fit's
``train_seconds`` in ``metrics.json`` (so start-up and compilation cancel out; JAX's
persistent compilation cache is off for these runs, or the second run would skip the
compilation the first one paid for). On a
2-core CPU this is a correctness exercise, not a speed-up: two devices or two processes
share the same two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from vaelab.store import runs
SETTINGS = {
    "1 device": ([], {}),
    "1 process × 2 devices": (["--distribute"],
                              {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}),
    "2 processes × 1 device": (None, {}),
}


def train_seconds(setting: str, args: list[str], out: Path) -> float:
    extra, env = SETTINGS[setting]
    command = (["launch", "--num-processes", "2", "--", "train", *args] if extra is None
               else ["train", *args, *extra])
    done = subprocess.run([sys.executable, "-m", "vaelab", *command, "--out", str(out),
                           "--overwrite", "--quiet"], capture_output=True, text=True,
                          env={**os.environ, "JAX_COMPILATION_CACHE_DIR": "", **env},
                          timeout=3600)
    if done.returncode:
        raise SystemExit(f"{setting}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
    return runs.read_json(out / "metrics.json")["train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", default="runs/scaling")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.json:
        runs.check_output_file(args.json, "--json")

    rows = []
    for batch in args.batch_size:
        for setting in SETTINGS:
            base = ["--batch-size", str(batch), "--train-size", str(args.train_size),
                    "--test-size", str(args.test_size)]
            out = Path(args.out) / f"b{batch}-{setting.split()[0]}{setting.split()[-2]}"
            started = time.perf_counter()
            one = train_seconds(setting, [*base, "--epochs", "1"], out)
            many = train_seconds(setting, [*base, "--epochs", str(args.epochs)], out)
            epoch = (many - one) / (args.epochs - 1)
            rows.append({"batch_size": batch, "setting": setting, "epoch_seconds": round(epoch, 3),
                         "first_epoch_seconds": round(one, 3),
                         "wall_seconds": round(time.perf_counter() - started, 1)})
            print(f"batch {batch:>4}  {setting:<24} {epoch:6.2f} s per epoch "
                  f"(first epoch {one:.2f} s)", flush=True)
    if args.json:
        runs.write_json(Path(args.json), {"settings": vars(args), "rows": rows})
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
