"""How fast vaelab trains and evaluates, against a plain-JAX floor measured in the same run.

    python benchmarks/speed.py [--json out.json] [--iwae-images 1000] [--lab] [--quick]
                               [--only PART ...]

Each part runs in its own subprocess so its peak resident memory can be reported:

- ``epochs``: vaelab's training epoch (the ``fit.Fit`` path ``vaelab train`` uses,
  with its callbacks) at batch 32 and 256, interleaved epoch by epoch with the floor
  (``floor.py``: the same model, loss, Adam and batch order as one ``lax.scan``). The first
  epoch of each includes compilation and is reported apart; the ratio uses medians of the
  steady epochs.
- ``families``: steady epoch seconds of the MLP, conv and conditional models at batch 32 and
  256 on ``--family-images`` training images (10 000 by default), through the same path;
  the conv model's interleaved epoch by epoch with the plain-JAX floor of the same model
  (``floor.py``: groups of 8 unrolled steps, validation included) and the eager PyTorch loop
  of the same architecture (``torch_eager.py``, same images, validation included), the
  MLP's with its eager PyTorch loop, with vaelab's ratio to each.
- ``iwae_training``: the IWAE-K training epoch (K = 5, 50) of Burda et al.'s model
  (784-200-200-50 tanh, Bernoulli, batch 20, Adam ε 1e-4) on ``--iwae-train-images``
  images (6 000 by default) through vaelab's fit path (with validation on 1 000 test
  images and a fresh binarization each epoch), interleaved with the plain-JAX IWAE floor
  (``floor.train_epoch_iwae``: the same model, loss and Adam as one ``lax.scan``; its
  epoch includes its own binarization).
- ``two_layer_training``: the same for Burda et al.'s two-stochastic-layer VAE (100 and 50
  units, ELBO) against its plain-JAX floor (``floor.train_epoch_two_layer``: the same model,
  KL estimates and Adam as one ``lax.scan``).
- ``scaling``: vaelab epoch time for batch 32…1024 and latent 2, 32, 128.
- ``inference``: encoder + decoder throughput on the 10 000 test images.
- ``iwae``: ``bounds.iwae_nll`` time for k = 10 … 5000 on ``--iwae-images`` test images
  (linear in the number of images: the 10 000-image time is extrapolated and marked so).
- ``population``: N = 1, 2, 4, 8 runs (seeds 0 … N − 1) trained together as one population
  against one run alone, at batch 32 and 256 on ``--population-images`` training images
  (10 000 by default), interleaved epoch by epoch (alone, then together), each N in its own
  process for its peak memory. Both through their real paths (validation, the collapse
  monitor, the KL schedule, the population's feed); ``one_by_one_s`` is N times the alone
  epoch, ``speedup`` its ratio to the population's epoch.
- ``conv_population``: the same for N = 2 and 4 conv models (``--model conv --hidden 16``),
  whose members share one compiled step of convolutions batched over the members.
- ``population_floor``: where a population's time goes, without vaelab: the plain-JAX floor
  (``floor.py``) for P = 1, 2, 3, 4, 8 lab models in one compiled epoch, as P separate
  models in one program and as one ``jax.vmap``-ed model, at batch 32 and 256, with the
  matrix-product rate reached (multiply-adds of the six products, forward and backward).
- ``lab`` (with ``--lab``): the wall time of ``vaelab lab`` as a subprocess; with
  ``--lab-seeds 1 3`` once per number of seeds, with ``--lab-together N`` passed on as
  ``--together N`` (1: one by one).

Prints a table; ``--json`` also writes every number.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load():
    import vaelab  # noqa: F401  (selects the JAX backend)
    from vaelab.core.config import TrainConfig
    from vaelab.training.preflight import run_dataset

    return TrainConfig, run_dataset


def vaelab_epochs(config, dataset, epochs, between=None):
    """Per-epoch seconds of vaelab's fit path; ``between(epoch)`` runs after each epoch."""
    import dataclasses

    import keras

    from vaelab.training.fit import Fit, Member
    from vaelab.training.trainer import new_vae

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.started)
            if between is not None:
                between(epoch)

    timer = Timer()
    config = dataclasses.replace(config, epochs=epochs)
    if config.conditional:
        config = dataclasses.replace(config, classes=dataset.classes)
    vae = new_vae(config, dataset.input_dim)
    Fit([Member(config, vae)], dataset).run(callbacks=[timer])  # no run folder: no checkpoints
    return timer.seconds, vae


def against_floor(seconds: list[float], floor_seconds: list[float]) -> dict:
    """Both series of epoch seconds, the compile overheads (first epoch) and the ratio of
    the steady medians."""
    steady_v, steady_f = statistics.median(seconds[1:]), statistics.median(floor_seconds[1:])
    return {
        "vaelab_epochs_s": [round(s, 3) for s in seconds],
        "floor_epochs_s": [round(s, 3) for s in floor_seconds],
        "vaelab_compile_s": round(seconds[0] - steady_v, 3),
        "floor_compile_s": round(floor_seconds[0] - steady_f, 3),
        "vaelab_median_s": round(steady_v, 3), "floor_median_s": round(steady_f, 3),
        "ratio": round(steady_v / steady_f, 3),
    }


def part_epochs(args) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    sys.path.insert(0, str(HERE))
    from floor import adam_init, init, train_epoch

    TrainConfig, load_dataset = load()
    results = {}
    for batch in (32, 256):
        config = TrainConfig(batch_size=batch, anneal="4:8", train_size=args.train_size)
        dataset = load_dataset(config)
        x = dataset.x_train
        steps = len(x) // batch
        state = {"params": init(jax.random.PRNGKey(0))}
        state["opt"] = adam_init(state["params"])
        floor_seconds = []

        def floor_epoch(epoch):
            order = np.random.default_rng([0, epoch]).permutation(len(x))[:steps * batch]
            started = time.perf_counter()
            batches = jnp.asarray(x[order].reshape(steps, batch, -1))
            state["params"], state["opt"], loss = train_epoch(
                state["params"], state["opt"], batches, jax.random.PRNGKey(epoch))
            loss.block_until_ready()
            floor_seconds.append(time.perf_counter() - started)

        seconds, _ = vaelab_epochs(config, dataset, args.epochs + 1, between=floor_epoch)
        results[f"batch_{batch}"] = against_floor(seconds, floor_seconds)
    return results


def part_families(args) -> dict:
    """Steady epoch seconds of each model family at batch 32 and 256 (same fit path); the
    MLP's and the conv model's interleaved epoch by epoch with the eager PyTorch loop of
    the same architecture (``torch_eager.py``, where torch is installed), the conv
    model's also with its plain-JAX floor."""
    TrainConfig, load_dataset = load()
    from vaelab.training.fit import validation_batch_size

    results = {}
    families = {"mlp": {}, "mlp_conditional": dict(conditional=True),
                "conv": dict(model="conv", hidden_dim=16),
                "conv_conditional": dict(model="conv", hidden_dim=16, conditional=True)}
    try:
        sys.path.insert(0, str(HERE))
        import torch_eager
    except ImportError:  # the torch extra is not installed
        torch_eager = None
    for name, change in families.items():
        for batch in (32, 256):
            config = TrainConfig(batch_size=batch, train_size=args.family_images, **change)
            dataset = load_dataset(config)
            between, torch_seconds, floor_seconds = None, [], []
            if name in ("mlp", "conv"):
                floor_epoch = None
                if name == "conv":
                    floor_epoch = conv_floor(dataset, batch, config.latent_dim,
                                             validation_batch_size(config))
                if torch_eager is not None:
                    model, optimizer = torch_eager.make(hidden=16, latent=config.latent_dim,
                                                        model=name)

                def between(epoch, floor_epoch=floor_epoch):
                    if floor_epoch is not None:
                        floor_seconds.append(floor_epoch(epoch))
                    if torch_eager is not None:
                        torch_seconds.append(torch_eager.epoch(
                            model, optimizer, dataset.x_train, dataset.x_test, batch, epoch))
            seconds, _ = vaelab_epochs(config, dataset, 3, between=between)
            steady = statistics.median(seconds[1:])
            results[f"{name}_batch_{batch}"] = round(steady, 3)
            for other, series in (("floor", floor_seconds), ("torch_eager", torch_seconds)):
                if series:
                    results[f"{name}_{other}_batch_{batch}"] = round(
                        statistics.median(series[1:]), 3)
                    results[f"{name}_vs_{other}_batch_{batch}"] = round(
                        steady / statistics.median(series[1:]), 3)
    return results


def conv_floor(dataset, batch: int, latent: int, validation_batch: int):
    """``epoch(e) -> seconds`` of the plain-JAX conv floor (``floor.py``): the epoch's
    batches in groups of 8 unrolled steps, then the loss on the test images in batches of
    ``validation_batch``, as vaelab's epoch validates."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    sys.path.insert(0, str(HERE))
    from floor import adam_init, conv_validation_loss, init_conv, train_steps_conv

    x, x_test = dataset.x_train, jnp.asarray(dataset.x_test)
    state = {"params": init_conv(jax.random.PRNGKey(0), latent=latent)}
    state["opt"] = adam_init(state["params"])

    def epoch(e):
        steps = len(x) // batch
        order = np.random.default_rng([0, e]).permutation(len(x))[:steps * batch]
        started = time.perf_counter()
        batches = jnp.asarray(x[order].reshape(steps, batch, -1))
        key = jax.random.PRNGKey(e)
        for i in range(0, steps, 8):
            key, sub = jax.random.split(key)
            state["params"], state["opt"], loss = train_steps_conv(
                state["params"], state["opt"], batches[i:i + 8], sub)
        losses = [conv_validation_loss(state["params"], x_test[i:i + validation_batch], key)
                  for i in range(0, len(x_test), validation_batch)]
        jax.block_until_ready((loss, losses))
        return time.perf_counter() - started

    return epoch


def _binarized_floor(config, dataset, params, train_epoch, epochs: int) -> dict:
    """vaelab's epochs of ``config`` interleaved with the plain-JAX floor's
    ``train_epoch(params, opt, batches, key)`` on the same images at batch 20, each floor
    epoch binarizing its images afresh (in its time), as vaelab's feed does."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from floor import adam_init

    x = dataset.x_train
    steps = len(x) // 20
    state = {"params": params, "opt": adam_init(params)}
    floor_seconds = []

    def floor_epoch(epoch):
        rng = np.random.default_rng([1, epoch])
        started = time.perf_counter()
        order = rng.permutation(len(x))[:steps * 20]
        binary = (rng.random((steps * 20, x.shape[1]), dtype=np.float32) < x[order])
        batches = jnp.asarray(binary.astype(np.float32).reshape(steps, 20, -1))
        state["params"], state["opt"], loss = train_epoch(
            state["params"], state["opt"], batches, jax.random.PRNGKey(epoch))
        loss.block_until_ready()
        floor_seconds.append(time.perf_counter() - started)

    seconds, _ = vaelab_epochs(config, dataset, epochs, between=floor_epoch)
    return against_floor(seconds, floor_seconds)


def part_iwae_training(args) -> dict:
    """IWAE-K training epochs (Burda et al.'s model, batch 20) against the plain-JAX IWAE floor."""
    import functools

    import jax

    sys.path.insert(0, str(HERE))
    from floor import init_burda, train_epoch_iwae

    TrainConfig, load_dataset = load()
    results = {}
    for k in (5, 50):
        config = TrainConfig(batch_size=20, hidden_dim=(200, 200), activation="tanh",
                             latent_dim=50, likelihood="bernoulli", objective=f"iwae:{k}",
                             adam_epsilon=1e-4, train_size=args.iwae_train_images,
                             test_size=1000)
        results[f"k_{k}"] = _binarized_floor(
            config, load_dataset(config), init_burda(jax.random.PRNGKey(0)),
            functools.partial(train_epoch_iwae, k=k), args.epochs + 1)
    return results


def part_two_layer_training(args) -> dict:
    """The two-layer VAE's training epoch (Burda et al.'s 100-50 model, ELBO, batch 20)
    against its plain-JAX floor (``floor.train_epoch_two_layer``), as ``iwae_training``."""
    import jax

    sys.path.insert(0, str(HERE))
    from floor import init_two_layer, train_epoch_two_layer

    TrainConfig, load_dataset = load()
    config = TrainConfig(batch_size=20, hidden_dim=((200, 200), (100, 100)), activation="tanh",
                         latent_dim=(100, 50), likelihood="bernoulli", adam_epsilon=1e-4,
                         train_size=args.iwae_train_images, test_size=1000)
    return _binarized_floor(config, load_dataset(config), init_two_layer(jax.random.PRNGKey(0)),
                            train_epoch_two_layer, args.epochs + 1)


def part_scaling(args) -> dict:
    TrainConfig, load_dataset = load()
    results = {}
    grid = [("batch", b, dict(batch_size=b)) for b in (32, 64, 128, 256, 1024)]
    grid += [("latent", d, dict(latent_dim=d)) for d in (2, 32, 128)]
    for name, value, change in grid:
        config = TrainConfig(train_size=args.train_size, **change)
        seconds, _ = vaelab_epochs(config, load_dataset(config), 2)
        results[f"{name}_{value}"] = round(seconds[1], 3)
    return results


def part_inference(args) -> dict:
    TrainConfig, load_dataset = load()
    config = TrainConfig(epochs=1, train_size=2048)
    dataset = load_dataset(config)
    _, vae = vaelab_epochs(config, dataset, 1)
    x = dataset.x_test
    vae.decoder.predict(vae.encoder.predict(x[:1000], batch_size=1000, verbose=0)[0], verbose=0)
    started = time.perf_counter()
    means = vae.encoder.predict(x, batch_size=1000, verbose=0)[0]  # the means
    vae.decoder.predict(means, batch_size=1000, verbose=0)
    seconds = time.perf_counter() - started
    return {"images": len(x), "seconds": round(seconds, 3), "images_per_s": round(len(x) / seconds)}


def part_iwae(args) -> dict:
    from vaelab.analysis import bounds
    TrainConfig, load_dataset = load()
    config = TrainConfig(epochs=1, train_size=2048)
    dataset = load_dataset(config)
    _, vae = vaelab_epochs(config, dataset, 1)
    x = dataset.x_test[:args.iwae_images]
    results = {"images": len(x)}
    for k in (10, 100, 1000, 5000):
        started = time.perf_counter()
        bounds.iwae_nll(vae, x, k)
        seconds = time.perf_counter() - started
        results[f"k_{k}_s"] = round(seconds, 2)
        if len(x) < 10000:
            results[f"k_{k}_10000_images_s_extrapolated"] = round(seconds * 10000 / len(x), 1)
    return results


def part_population_members(args) -> dict:
    """One N: steady epoch seconds of N members together and of one run alone, interleaved."""
    TrainConfig, load_dataset = load()
    from vaelab.training.fit import Fit, Member
    from vaelab.training.trainer import new_vae

    n = args.members
    results = {}
    family = dict(model="conv", hidden_dim=16) if args.family == "conv" else {}
    for batch in (32, 256):
        config = TrainConfig(batch_size=batch, anneal="4:8", train_size=args.population_images,
                             **family)
        dataset = load_dataset(config)
        configs = [dataclasses.replace(config, seed=s).for_data(dataset.input_dim)
                   for s in range(n)]
        together = Fit([Member(c, new_vae(c, dataset.input_dim)) for c in configs], dataset)
        seconds = []

        def together_epoch(epoch):
            started = time.perf_counter()
            together.run(initial_epoch=epoch, epochs=epoch + 1)
            seconds.append(time.perf_counter() - started)

        alone, _ = vaelab_epochs(config, dataset, args.epochs + 1, between=together_epoch)
        alone_s, together_s = statistics.median(alone[1:]), statistics.median(seconds[1:])
        results[f"batch_{batch}"] = {
            "alone_epoch_s": round(alone_s, 3), "together_epoch_s": round(together_s, 3),
            "one_by_one_s": round(n * alone_s, 3), "speedup": round(n * alone_s / together_s, 2),
            "together_compile_s": round(seconds[0] - together_s, 2)}
    return results

def part_population(args, family: str = "mlp", sizes=(1, 2, 4, 8)) -> dict:
    """``population_members`` of ``family`` for each N of ``sizes``, each in its own process
    (peak memory)."""
    results = {}
    for n in sizes:
        done = subprocess.run([sys.executable, __file__, "--part", "population_members",
                               "--members", str(n), "--epochs", str(args.epochs),
                               "--population-images", str(args.population_images),
                               "--family", family],
                              capture_output=True, text=True, timeout=PART_TIMEOUT)
        if done.returncode != 0:
            raise RuntimeError(f"N = {n} failed:\n{done.stderr[-2000:]}")
        child = json.loads(done.stdout.strip().splitlines()[-1])
        results[f"members_{n}"] = {**child["values"], "peak_mb": child["peak_mb"]}
    return results


def part_conv_population(args) -> dict:
    """``population_members`` of conv models (``--model conv --hidden 16``) for N = 2 and 4:
    members trained together (``--together``) against one run alone, per member."""
    return part_population(args, "conv", (2, 4))


def part_population_floor(args) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    sys.path.insert(0, str(HERE))
    from floor import _adam_scan, adam_init, init, loss_fn

    def epoch(params, opt, batches, key):
        return _adam_scan(loss_fn, params, opt, batches, key, 1e-3, 0.9, 0.999, 1e-7,
                          kl_scale=1 / 784)

    def separate(params, opts, batches, keys):
        out = [epoch(*a) for a in zip(params, opts, batches, keys)]
        return [o[0] for o in out], [o[1] for o in out], jnp.stack([o[2] for o in out])

    runs = {"separate": jax.jit(separate, donate_argnums=(0, 1)),
            "vmap": jax.jit(jax.vmap(epoch), donate_argnums=(0, 1))}
    n = args.population_images
    x = np.random.default_rng(0).random((n, 784), dtype=np.float32)
    macs = 784 * 512 + 512 * 32 * 2 + 32 * 512 + 512 * 784  # per image, forward
    results = {}
    for batch in (32, 256):
        steps = n // batch
        for p in (1, 2, 3, 4, 8):
            batches = np.stack([x[np.random.default_rng(i).permutation(n)[:steps * batch]]
                                .reshape(steps, batch, 784) for i in range(p)])
            keys = jax.random.split(jax.random.PRNGKey(1), p)
            row = {}
            for name, fn in runs.items():
                if name == "vmap":
                    params = jax.vmap(init)(jax.random.split(jax.random.PRNGKey(0), p))
                    state = (params, jax.vmap(adam_init)(params), jnp.asarray(batches), keys)
                else:
                    params = [init(jax.random.PRNGKey(i)) for i in range(p)]
                    state = (params, [adam_init(q) for q in params],
                             [jnp.asarray(b) for b in batches], list(keys))
                seconds = []
                for _ in range(4):
                    started = time.perf_counter()
                    new_params, new_opt, loss = fn(*state)
                    jax.block_until_ready(loss)
                    seconds.append(time.perf_counter() - started)
                    state = (new_params, new_opt, *state[2:])
                best = min(seconds[1:])
                row[f"{name}_s"] = round(best, 3)
                row[f"{name}_gflops"] = round(3 * 2 * macs * batch * steps * p / best / 1e9, 1)
            results[f"batch_{batch}_p_{p}"] = row
    return results


def part_lab(args) -> dict:
    results = {}
    for seeds in args.lab_seeds:
        extra = ["--together", str(args.lab_together)] if args.lab_together else []
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "vaelab.cli", "lab", "--quiet", "--overwrite",
                            "--seeds", str(seeds), *extra, "--out", out], check=True)
            seconds = time.perf_counter() - started
        results[f"seeds_{seeds}_s"] = round(seconds, 1)
    if len(args.lab_seeds) == 1:
        results["seconds"] = results.pop(f"seeds_{args.lab_seeds[0]}_s")
    else:
        first = results[f"seeds_{args.lab_seeds[0]}_s"]
        results["ratio_to_first"] = {f"seeds_{s}": round(results[f"seeds_{s}_s"] / first, 2)
                                     for s in args.lab_seeds}
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    results["child_peak_mb"] = round(peak)
    return results


PARTS = {"epochs": part_epochs, "families": part_families, "iwae_training": part_iwae_training,
         "two_layer_training": part_two_layer_training,
         "scaling": part_scaling,
         "inference": part_inference,
         "iwae": part_iwae, "population": part_population,
         "population_members": part_population_members,
         "conv_population": part_conv_population,
         "population_floor": part_population_floor, "lab": part_lab}


PART_TIMEOUT = 3600  # seconds per part: the longest (the lab) takes about 4 minutes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument("--epochs", type=int, default=3, help="steady epochs per batch size")
    parser.add_argument("--train-size", type=int, default=None, help="training images (all)")
    parser.add_argument("--iwae-images", type=int, default=1000)
    parser.add_argument("--family-images", type=int, default=10000,
                        help="training images per epoch in the families part")
    parser.add_argument("--iwae-train-images", type=int, default=6000,
                        help="training images per epoch in the iwae_training part")
    parser.add_argument("--population-images", type=int, default=10000,
                        help="training images per epoch in the population part")
    parser.add_argument("--lab", action="store_true", help="also time the whole vaelab lab")
    parser.add_argument("--lab-seeds", type=int, nargs="+", default=[1],
                        help="time the lab once per number of seeds (e.g. 1 3)")
    parser.add_argument("--lab-together", type=int,
                        help="time the lab with --together N (default: vaelab's)")
    parser.add_argument("--members", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--family", choices=("mlp", "conv"), default="mlp",
                        help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="a small smoke run of every part")
    parser.add_argument("--only", nargs="+", choices=PARTS, metavar="PART",
                        help=f"run only these parts ({', '.join(PARTS)})")
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.json and not args.part:
        import vaelab  # noqa: F401  (selects the JAX backend before Keras loads)
        from vaelab.store import runs
        runs.check_output_file(args.json, "--json")
    if args.part:  # a child: one part, its numbers and peak memory as JSON on the last line
        values = PARTS[args.part](args)
        print(json.dumps({"values": values, "peak_mb": round(peak_mb())}))
        return
    if args.quick:
        args.train_size, args.epochs, args.iwae_images = 4096, 2, 50
        args.family_images, args.iwae_train_images = 1024, 1000
        args.population_images = 2048
    forwarded = ["--epochs", str(args.epochs), "--iwae-images", str(args.iwae_images),
                 "--family-images", str(args.family_images),
                 "--iwae-train-images", str(args.iwae_train_images),
                 "--population-images", str(args.population_images),
                 "--lab-seeds", *map(str, args.lab_seeds)]
    forwarded += ["--lab-together", str(args.lab_together)] if args.lab_together else []
    if args.train_size:
        forwarded += ["--train-size", str(args.train_size)]
    report = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
              "date": time.strftime("%Y-%m-%d")}
    chosen = args.only or [p for p in PARTS if (p != "lab" or args.lab)
                           and p != "population_members"]
    for name in chosen:
        try:
            done = subprocess.run([sys.executable, __file__, "--part", name, *forwarded],
                                  capture_output=True, text=True, timeout=PART_TIMEOUT)
        except subprocess.TimeoutExpired:  # subprocess.run has killed it
            write_report(args.json, report)
            sys.exit(f"part {name} ran longer than {PART_TIMEOUT} s; the parts before it are "
                     f"in {args.json or 'the lines above'}")
        if done.returncode != 0:
            write_report(args.json, report)
            sys.exit(f"part {name} failed:\n{done.stderr[-2000:]}")
        report[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"\n== {name} (peak RSS {report[name]['peak_mb']} MB)")
        for key, value in report[name]["values"].items():
            print(f"  {key:<40} {value}")
    import vaelab  # noqa: F401  (selects the JAX backend before Keras loads)
    import keras

    report["versions"] = {"keras": keras.__version__, "backend": keras.backend.backend()}
    write_report(args.json, report)


def write_report(path, report: dict) -> None:
    """The numbers so far as JSON (atomically), when ``--json`` was given."""
    if path:
        from vaelab.store import runs
        runs.write_text(path, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
