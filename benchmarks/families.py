"""What each model family reaches after a few epochs, on MNIST and Fashion-MNIST.

    python benchmarks/families.py [--epochs 3] [--train-size 10000] [--test-size 1000]
                                  [--k 100] [--latent 16] [--json out.json] [--out DIR]
                                  [--dataset mnist fashion-mnist] [--likelihood gaussian bernoulli]

Every family trains through ``vaelab.training.trainer.train`` (the path of ``vaelab train``) and is
evaluated by ``vaelab.analysis.evaluation.evaluate`` (the path of ``vaelab evaluate``), so the run
folders under ``--out`` are ordinary runs. Reported per family, dataset and likelihood:
test MSE of the reconstructions from the encoder means, the IWAE estimate of −log p(x)
with exactly ``--k`` samples per test image, the active units (of ``--latent``) and the
seconds of training. A Gaussian NLL is a density of continuous pixels under σ² = ½
(the lab's scaling); a Bernoulli NLL is over test images binarized once with a fixed
seed; the two are not comparable with each other.

Families: the lab's MLP (512 relu), a two-layer MLP (200, 200 tanh, Burda et al.'s
shape), the convolutional model (Keras example style, dense width 16), and the
conditional MLP and conv models.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import vaelab  # noqa: F401  (selects the JAX backend)
from vaelab.analysis.evaluation import evaluate
from vaelab.core.config import TrainConfig
from vaelab.store import runs
from vaelab.training.trainer import train

FAMILIES = {
    "mlp 512 relu (lab)": {},
    "mlp 200,200 tanh": dict(hidden_dim=(200, 200), activation="tanh"),
    "conv (dense 16)": dict(model="conv", hidden_dim=16),
    "conditional mlp 512": dict(conditional=True),
    "conditional conv": dict(model="conv", hidden_dim=16, conditional=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--latent", type=int, default=16)
    parser.add_argument("--dataset", nargs="+", default=["mnist", "fashion-mnist"])
    parser.add_argument("--likelihood", nargs="+", default=["gaussian", "bernoulli"])
    parser.add_argument("--out", default="runs/families")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.json:
        runs.check_output_file(args.json, "--json")

    rows = []
    for dataset in args.dataset:
        for likelihood in args.likelihood:
            for name, change in FAMILIES.items():
                config = TrainConfig(epochs=args.epochs, train_size=args.train_size,
                                     test_size=args.test_size, latent_dim=args.latent,
                                     dataset=dataset, likelihood=likelihood, **change)
                run_dir = Path(args.out) / f"{dataset}-{likelihood}-{len(rows)}"
                started = time.perf_counter()
                values = train(config, run_dir, overwrite=True, verbose=False)
                seconds = time.perf_counter() - started
                evaluated = evaluate(run_dir, k=args.k, verbose=False)
                rows.append({"dataset": dataset, "likelihood": likelihood, "family": name,
                             "test_mse": values["test_mse"],
                             "iwae_nll": evaluated["iwae_nll"],
                             "iwae_nll_se": evaluated["iwae_nll_se"], "k": evaluated["k"],
                             "active_units": values["active_units"],
                             "train_seconds": round(seconds, 1), "run_dir": str(run_dir)})
                print(_line(rows[-1], args.latent), flush=True)

    print(f"\n{args.epochs} epochs on {args.train_size} training images; "
          f"{args.test_size} test images; IWAE k = {args.k}; latent {args.latent}")
    print(f"{'dataset':<14} {'likelihood':<10} {'family':<22} {'MSE':>7} "
          f"{'NLL (nats)':>16} {'active':>7} {'train s':>8}")
    for row in rows:
        print(_line(row, args.latent))
    if args.json:
        runs.write_text(args.json, json.dumps({"settings": vars(args), "rows": rows}, indent=1))


def _line(row: dict, latent: int) -> str:
    nll = f"{row['iwae_nll']:.2f} ± {row['iwae_nll_se']:.2f}"
    return (f"{row['dataset']:<14} {row['likelihood']:<10} {row['family']:<22} "
            f"{row['test_mse']:>7.4f} {nll:>16} {row['active_units']:>3}/{latent:<3} "
            f"{row['train_seconds']:>8.1f}")


if __name__ == "__main__":
    main()
