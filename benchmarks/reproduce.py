"""Burda et al. (2015)'s one-stochastic-layer MNIST likelihoods, reproduced with vaelab.

    python benchmarks/reproduce.py [--models vae iwae5 iwae50] [--passes N] [--k 5000]
                                   [--output-bias zero|data] [--test-size N] [--out DIR]
                                   [--json out.json] [--seed 0]

The setting of the paper's table 1 (one stochastic layer): 784-200-200-50 tanh MLP
encoder and mirrored decoder, Bernoulli likelihood of logits, training images binarized
afresh at every use (each epoch), batch 20, Adam (β₁ 0.9, β₂ 0.999, ε 1e-4), learning rate
1e-3·10^(−i/7) for 3^i passes, i = 0 … 7 (3 280 passes). Models: the VAE (the ELBO, k = 1),
and the IWAE with k = 5 and k = 50 (``--objective iwae:K``); and, by name only, the richer
latent models in the same setting: ``hvae`` (the paper's two stochastic layers, 100 and 50
units, 200-200 and 100-100 tanh MLPs), ``vamp`` (the one-layer VAE with a VampPrior of 100
pseudo-inputs and Tomczak and Welling's KL warm-up over the first 100 passes: without one it
collapses with a zero output bias, ``latent_pilot.py``), ``iaf`` (the one-layer VAE with two
IAF steps) and ``iaf-context`` (the same steps, each also given the encoder's mean and
log-variance: Kingma et al.'s context, so that the flow depends on x). Each is trained by
``vaelab.training.trainer.train`` (the path of ``vaelab train``) and evaluated by
``vaelab.analysis.evaluation.evaluate`` with IWAE k = 5000 on the 10 000 test images (binarized
once with a fixed seed). ``--passes N`` truncates the schedule to its first N passes (the
learning rate follows the same stages), so that a run fits a budget; the full schedule is
for a machine with an accelerator. Every row prints the exact ``vaelab`` command that
trains the same run. ``--output-bias data`` starts the decoder's output bias at the logit of
the training images' mean pixel, as Burda et al.'s released code does (the default, zero,
is Keras'; the one-layer rows of ``docs/science.md`` were measured with it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import vaelab  # noqa: F401  (selects the JAX backend)
from vaelab.analysis.evaluation import evaluate
from vaelab.choices import OUTPUT_BIASES
from vaelab.core.config import TrainConfig
from vaelab.store import runs
from vaelab.training.trainer import train

FULL_PASSES = sum(3**i for i in range(8))  # 3 280

# Burda, Grosse and Salakhutdinov 2015, "Importance Weighted Autoencoders", table 1,
# MNIST: test −log p(x) in nats (estimated with k = 5000); one stochastic layer
# (784-200-200-50) and two (784-200-200-100-100-100-50, as hvae here).
# Tomczak and Welling 2018, "VAE with a VampPrior", table 2: 85.57 for their one-layer VAE
# with a VampPrior (a 2×300 gated MLP, latent 40, 500 pseudo-inputs, warm-up), not this
# architecture; Burda et al.'s table has no VampPrior or IAF row, so the vamp and iaf
# rows have no published number in this setting.
PUBLISHED = {"vae": 86.76, "iwae5": 85.54, "iwae50": 84.78, "hvae": 85.33, "vamp": None,
             "iaf": None, "iaf-context": None}
TITLES = {"vae": "VAE (k = 1)", "iwae5": "IWAE k = 5", "iwae50": "IWAE k = 50",
          "hvae": "2-layer VAE", "vamp": "VAE, VampPrior", "iaf": "VAE, IAF",
          "iaf-context": "VAE, IAF with context"}
PSEUDO_INPUTS = 100   # Tomczak and Welling used 500; 100 costs a third of the time (docs/science.md)
FLOW_STEPS = 2        # IAF steps (each a MADE of two hidden layers of 200)

# Each model's settings beyond Burda et al.'s one-layer ones.
MODELS = {
    "vae": {"objective": "elbo"},
    "iwae5": {"objective": "iwae:5"},
    "iwae50": {"objective": "iwae:50"},
    "hvae": {"objective": "elbo", "latent_dim": (100, 50), "hidden_dim": ((200, 200), (100, 100))},
    "vamp": {"objective": "elbo", "prior": f"vamp:{PSEUDO_INPUTS}", "anneal": "1:100"},
    "iaf": {"objective": "elbo", "posterior": f"iaf:{FLOW_STEPS}"},
    "iaf-context": {"objective": "elbo", "posterior": f"iaf:{FLOW_STEPS}:context"},
}
OBJECTIVES = {model: spec["objective"] for model, spec in MODELS.items()}


def config_for(model: str, passes: int, seed: int, test_size: int | None,
               output_bias: str = "zero") -> TrainConfig:
    settings = {"hidden_dim": (200, 200), "latent_dim": 50, **MODELS[model]}
    return TrainConfig(epochs=passes, batch_size=20, activation="tanh",
                       likelihood="bernoulli", lr_schedule="burda", adam_epsilon=1e-4,
                       seed=seed, test_size=test_size, output_bias=output_bias, **settings)


def command(config: TrainConfig, out: Path) -> str:
    hidden = "/".join(",".join(map(str, g)) for g in config.hidden_groups)
    extra = "".join(f" --{name.replace('_', '-')} {getattr(config, name)}"
                    for name in ("prior", "posterior", "anneal", "output_bias")
                    if getattr(config, name) != TrainConfig.__dataclass_fields__[name].default)
    return (f"vaelab train --epochs {config.epochs} --batch-size 20 --hidden {hidden} "
            f"--activation tanh --latent-dim {','.join(map(str, config.latents))} "
            f"--likelihood bernoulli --objective {config.objective}{extra} --lr-schedule burda "
            f"--adam-epsilon 1e-4 --seed {config.seed}"
            + (f" --test-size {config.test_size}" if config.test_size else "") + f" --out {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS),
                        default=["vae", "iwae5", "iwae50"])
    parser.add_argument("--passes", type=int, default=FULL_PASSES,
                        help=f"passes over the training set (the full schedule: {FULL_PASSES})")
    parser.add_argument("--k", type=int, default=5000, help="IWAE samples of the evaluation")
    parser.add_argument("--test-size", type=int, default=None, help="test images (all 10 000)")
    parser.add_argument("--output-bias", choices=OUTPUT_BIASES, default="zero",
                        help="the decoder's output bias at the start: zero (Keras') or data "
                             "(the logit of the training mean pixel, as Burda et al.'s code)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/reproduce")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.json:
        runs.check_output_file(args.json, "--json")

    rows = []
    for model in args.models:
        config = config_for(model, args.passes, args.seed, args.test_size, args.output_bias)
        run_dir = Path(args.out) / model
        started = time.perf_counter()
        train(config, run_dir, overwrite=True, verbose=True)
        train_seconds = time.perf_counter() - started
        values = evaluate(run_dir, k=args.k, verbose=True)
        rows.append({"model": model, "title": TITLES[model], "passes": args.passes,
                     "train_seconds": round(train_seconds), "eval_seconds": values["seconds"],
                     "iwae_nll": values["iwae_nll"], "iwae_nll_se": values["iwae_nll_se"],
                     "minus_elbo": -values["elbo"], "k": values["k"],
                     "test_images": values["test_images"],
                     "active_units": values["active_units"],
                     "active_per_layer": [layer["active_units"]
                                          for layer in values.get("layers", [])],
                     "latent": sum(config.latents), "published": PUBLISHED[model],
                     "command": command(config, run_dir)})
        if args.json:  # after every model, so a long run leaves what it has
            runs.write_text(args.json, json.dumps({"settings": vars(args), "rows": rows},
                                                 indent=1) + "\n")

    print(f"\n{'model':<14} {'passes':>6} {'train':>8} {'−log p(x), nats':>17} {'−ELBO':>8} "
          f"{'active':>6} {'published':>9}")
    for r in rows:
        nll = f"{r['iwae_nll']:.2f} ± {r['iwae_nll_se']:.2f}"
        published = "—" if r["published"] is None else f"{r['published']:.2f}"
        active = "+".join(map(str, r["active_per_layer"])) or str(r["active_units"])
        print(f"{r['title']:<14} {r['passes']:>6} {r['train_seconds'] / 60:>6.1f} m {nll:>17} "
              f"{r['minus_elbo']:>8.2f} {active:>7}/{r['latent']} {published:>9}")
    for r in rows:
        print(f"{r['title']}: {r['command']}")
    print(f"evaluation: IWAE k = {rows[0]['k'] if rows else args.k} on "
          f"{rows[0]['test_images'] if rows else 'all'} test images")


if __name__ == "__main__":
    main()
