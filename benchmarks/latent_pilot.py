"""A pilot of the richer latent models in Burda et al.'s setting: the first passes, side by side.

    python benchmarks/latent_pilot.py [--passes 8] [--train-size 10000] [--test-size 2000]
                                      [--output-bias zero|data] [--out DIR] [--json out.json]

Each model of ``reproduce.py``'s setting (784-200-200 tanh MLPs, Bernoulli, batch 20,
Burda et al.'s Adam and learning-rate schedule, images binarized afresh each pass) is
trained for ``--passes`` passes over the first ``--train-size`` training images, through
``vaelab.training.trainer.train``, and its validation −ELBO (nats per image, on the first
``--test-size`` test images binarized once) is printed pass by pass with its KL at the
end. The models: the one-layer VAE with 50 and with 100 latent units, the two-layer VAE
(100-50), the VampPrior of 100 pseudo-inputs without and with a KL warm-up over the
first passes (``--anneal 1:N``), and the IAF posterior (2 steps). This says which models
learn quickly enough for a one-hour budget, and which need a warm-up; it is not a
likelihood (``reproduce.py`` is). During a warm-up the validation loss weighs the KL by the
pass's weight (below 1), so it is below the −ELBO until the warm-up ends.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import reproduce

import vaelab  # noqa: F401  (selects the JAX backend)
from vaelab.choices import OUTPUT_BIASES
from vaelab.store import runs
from vaelab.training.trainer import train


def variants(passes: int) -> dict[str, tuple[str, dict]]:
    """name → (reproduce.py's model, settings changed on top of it)."""
    warm = max(2, passes // 2)
    return {
        "vae (latent 50)": ("vae", {}),
        "vae (latent 100)": ("vae", {"latent_dim": 100}),
        "2-layer vae (100-50)": ("hvae", {}),
        f"vamp:{reproduce.PSEUDO_INPUTS}, no warm-up": ("vamp", {"anneal": None}),
        f"vamp:{reproduce.PSEUDO_INPUTS}, --anneal 1:{warm}": ("vamp", {"anneal": f"1:{warm}"}),
        f"iaf:{reproduce.FLOW_STEPS}": ("iaf", {}),
        f"iaf:{reproduce.FLOW_STEPS}:context": ("iaf-context", {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=8)
    parser.add_argument("--train-size", type=int, default=10_000)
    parser.add_argument("--test-size", type=int, default=2_000)
    parser.add_argument("--output-bias", choices=OUTPUT_BIASES, default="zero",
                        help="the decoder's output bias at the start (reproduce.py's option)")
    parser.add_argument("--out", default="runs/latent_pilot")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.json:
        runs.check_output_file(args.json, "--json")
    rows = []
    for i, (name, (model, change)) in enumerate(variants(args.passes).items()):
        config = dataclasses.replace(
            reproduce.config_for(model, args.passes, 0, None, args.output_bias),
            train_size=args.train_size,
            test_size=args.test_size, **change)
        run_dir = Path(args.out) / f"variant-{i}"
        started = time.perf_counter()
        train(config, run_dir, overwrite=True, verbose=False)
        history = runs.read_history_csv(run_dir / "history.csv")
        rows.append({"name": name, "seconds": round(time.perf_counter() - started, 1),
                     "val_minus_elbo": [round(float(v), 1) for v in history["val_loss"]],
                     "val_kl": round(float(history["val_kl_loss"][-1]), 2)})
        print(f"{name:<28} −ELBO by pass {rows[-1]['val_minus_elbo']}, KL at the end "
              f"{rows[-1]['val_kl']}", flush=True)
    if args.json:
        runs.write_text(args.json, json.dumps({"settings": vars(args), "rows": rows},
                                              indent=1) + "\n")


if __name__ == "__main__":
    main()
