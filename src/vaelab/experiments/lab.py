"""The seed lab end to end: five runs in the lab's order, then the report.

1. ``01-classifier``: the custom-dense classifier, 2 epochs → test accuracy;
2. ``02-vae``: the VAE with the KL scaled by 1/784, 2 epochs;
3. ``03-vae-unscaled``: the same without the 1/784 (mode collapse);
4. ``04-anneal``: KL annealing (start 4, duration 8), 20 epochs, KL/784;
5. ``05-anneal-unscaled``: the same without the 1/784.

``quick=True`` runs the same pipeline on 1 024 training and 512 test images
with shorter runs (annealing 2:2 over 5 epochs), for tests and a first look.

``seeds=N > 1`` trains every VAE experiment with seeds 0 … N − 1, each in
``NAME/seed-S``; the report then gives mean ± standard deviation over the seeds and
states a verdict only where all seeds agree. ``seeds=1`` is the lab as it always was
(seed 0, one folder per experiment).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import keras

from vaelab.core.config import TrainConfig, UsageError
from vaelab.core.models import build_classifier
from vaelab.data import Dataset
from vaelab.experiments import report
from vaelab.experiments.report import CLASSIFIER
from vaelab.experiments.runner import QUICK_SIZES, Kind, Planned, resume_plan, run_plan
from vaelab.store import runs
from vaelab.training.feeding import Feed
from vaelab.training.fit import progress_mode



@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str       # run folder (or, with several seeds, the folder of its seeds' runs)
    title: str      # one line for the report
    config: TrainConfig


def seeded_runs(experiment: Experiment, seeds: int) -> list[tuple[str, TrainConfig]]:
    """``(folder, config)`` of each seed's run: the experiment's own folder for one seed,
    ``NAME/seed-S`` with ``seed=S`` for S = 0 … seeds − 1 otherwise."""
    if seeds == 1:
        return [(experiment.name, experiment.config)]
    return [(f"{experiment.name}/seed-{s}", dataclasses.replace(experiment.config, seed=s))
            for s in range(seeds)]


def experiments(quick: bool = False, data_dir: str | None = None) -> list[Experiment]:
    """The lab's four VAE runs (the classifier is separate: it is not a VAE)."""
    sizes = QUICK_SIZES if quick else {}
    short = dict(epochs=2, **sizes)
    anneal = dict(epochs=5, anneal="2:2", **sizes) if quick else dict(epochs=20, anneal="4:8")
    common = dict(data_dir=data_dir)
    return [
        Experiment("02-vae", "VAE, KL / 784", TrainConfig(**short, **common)),
        Experiment("03-vae-unscaled", "VAE, KL unscaled",
                   TrainConfig(kl_scale=1.0, **short, **common)),
        Experiment("04-anneal", "KL annealing, KL / 784", TrainConfig(**anneal, **common)),
        Experiment("05-anneal-unscaled", "KL annealing, KL unscaled",
                   TrainConfig(kl_scale=1.0, **anneal, **common)),
    ]


def train_classifier(data: Dataset, run_dir: Path, epochs: int, seed: int = 0,
                     train_size: int | None = None, test_size: int | None = None,
                     verbose: bool = True) -> dict:
    """The lab's first model: OurDense(32, relu) → OurDense(10, softmax) on the images."""
    x_train, y_train = data.x_train[:train_size], data.y_train[:train_size]
    x_test, y_test = data.x_test[:test_size], data.y_test[:test_size]
    classes = int(max(y_train.max(), y_test.max())) + 1
    if classes > 10:
        raise UsageError(f"the classifier has 10 outputs, the labels go up to {classes - 1}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").unlink(missing_ok=True)
    runs.write_json(run_dir / "config.json", {
        "model": "classifier", "epochs": epochs, "batch_size": 32, "seed": seed,
        "train_size": train_size, "test_size": test_size, "data": data.identity,
        "environment": runs.environment()})
    model = build_classifier(x_train.shape[1], seed=seed)
    feed = Feed([x_train, keras.utils.to_categorical(y_train, 10)], [seed])
    started = time.perf_counter()
    history = model.fit(*feed.arrays[0], epochs=epochs, batch_size=32, shuffle=False,
                        callbacks=[feed], verbose=progress_mode(verbose)).history
    seconds = time.perf_counter() - started
    _, accuracy = model.evaluate(x_test, keras.utils.to_categorical(y_test, 10), verbose=0)
    runs.write_history_csv(run_dir / "history.csv", history)
    values = {"test_accuracy": float(accuracy), "epochs": epochs,
              "train_seconds": round(seconds, 3), "complete": True}
    runs.write_json(run_dir / "metrics.json", values)
    if verbose:
        print(f"{run_dir}: classifier test accuracy {accuracy:.4f} after {epochs} epoch(s)")
    return values


def _plan(quick: bool, seeds: int, data_dir: str | None) -> list[Planned]:
    return [Planned(e.name, e.title, folder, config) for e in experiments(quick, data_dir)
            for folder, config in seeded_runs(e, seeds)]


def _classifier(data: Dataset, out: Path, quick: bool, verbose: bool) -> None:
    train_classifier(data, out / CLASSIFIER, epochs=1 if quick else 2, verbose=verbose,
                     **(QUICK_SIZES if quick else {}))


LAB = Kind("lab", "lab.json", "experiments", _plan, report.write_report,
           first=_classifier, first_folder=CLASSIFIER, default_out="runs/lab", default_seeds=1)


def run_lab(out="runs/lab", quick: bool = False, data_dir: str | None = None,
            overwrite: bool = False, verbose: bool = True, seeds: int = 1,
            together: int | None = None) -> Path:
    """Run the whole lab into ``out`` and write ``report.md`` and ``report.html``.

    The VAE runs that share their epochs (02 and 03; 04 and 05; with every seed) can train
    together as populations of up to ``together`` (:func:`vaelab.training.population.train_many`;
    ``None``: 8 on an accelerator, one by one on a CPU), each with the history it would
    have alone. An interrupted lab is finished by :func:`resume_lab`.
    """
    return run_plan(LAB, out, quick=quick, seeds=seeds, data_dir=data_dir, overwrite=overwrite,
                    verbose=verbose, together=together)


def resume_lab(out, verbose: bool = True, together: int | None = None) -> Path:
    """Finish an interrupted lab in ``out`` (``vaelab lab --resume OUT``) and write its report:
    :func:`vaelab.experiments.runner.resume_plan`."""
    return resume_plan(LAB, out, verbose=verbose, together=together)
