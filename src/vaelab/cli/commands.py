"""What each ``vaelab`` command does, once :mod:`vaelab.cli.parser` has parsed it.

Errors a user can cause (bad values, unusable data) are printed as one line and exit
with status 2; nothing else happens at import time.
"""

from __future__ import annotations

import os
import sys
import traceback

import numpy as np

from vaelab import data, signals
from vaelab.choices import DATASET_TITLES as TITLES
from vaelab.cli.parser import build_parser
from vaelab.core.config import JobFailed, NonFiniteLoss, NotebookFailed, TrainConfig, UsageError
from vaelab.dist import cluster


def _data_fetch(args) -> None:
    origin = data.fetch_mnist(dataset=args.dataset)
    where, title = data.cache_dir(args.dataset), TITLES[args.dataset]
    if origin == "cache":
        print(f"{title} already in {where} (all four SHA-256 checksums verified)")
    else:
        print(f"{title} fetched from {origin} into {where} (all four SHA-256 checksums verified)")


def _data_info(args) -> None:
    folder, origin = data.resolve_data_dir(args.data_dir, dataset=args.dataset)
    (x_train, y_train), (x_test, y_test) = data.load_idx_dir(folder)
    print(f"folder:        {folder} ({origin})")
    print(f"train:         {x_train.shape[0]} images of {x_train.shape[1]}x{x_train.shape[2]}")
    print(f"test:          {x_test.shape[0]} images of {x_test.shape[1]}x{x_test.shape[2]}")
    for split, labels in (("train", y_train), ("test", y_test)):
        values, counts = np.unique(labels, return_counts=True)
        histogram = " ".join(f"{v}:{c}" for v, c in zip(values, counts))
        print(f"{(split + ' labels:'):<15}{histogram}")
    status = data.checksum_status(folder, args.dataset)
    title = TITLES[args.dataset]
    other = next((name for name in TITLES if name != args.dataset and all(
        s == "ok" for s in data.checksum_status(folder, name).values())), None)
    if all(s == "ok" for s in status.values()):
        print(f"checksums:     verified {title} (all four SHA-256 match)")
    elif other is not None:  # whole and verified, as another named dataset
        print(f"checksums:     verified {TITLES[other]} (all four SHA-256 match); "
              f"use --dataset {other}")
    else:
        detail = ", ".join(f"{name} {s}" for name, s in status.items())
        print(f"checksums:     not verified {title} ({detail})")


def _default_out(prefix: str = "runs") -> str:
    import datetime

    return f"{prefix}/{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"


TRAIN_OPTIONS = ("epochs", "batch_size", "model", "conditional", "hidden_dim", "activation", "latent_dim", "prior", "posterior", "kl_scale",
                 "beta", "free_bits", "objective", "likelihood", "dataset", "anneal",
                 "schedule", "learning_rate", "lr_schedule", "adam_epsilon", "output_bias", "seed", "data_dir", "train_size", "test_size",
                 "distribute")


def _train_config(args) -> tuple[dict, TrainConfig | None]:
    """The options given to ``train``, and their checked config (``None`` with --resume)."""
    if args.hidden is not None:
        if args.hidden_dim is not None:
            raise UsageError("give --hidden or --hidden-dim, not both")
        args.hidden_dim = args.hidden
    given = {name: getattr(args, name) for name in TRAIN_OPTIONS if getattr(args, name) is not None}
    if args.resume is not None and (args.out or args.overwrite):
        raise UsageError("--resume continues the run in RUN_DIR; --out and --overwrite do not apply")
    return given, (TrainConfig(**given) if args.resume is None else None)


def _train(args) -> None:
    given, config = _train_config(args)
    verbose = not args.quiet
    job = cluster.job_from_args(bool(args.distribute), args.coordinator, args.num_processes,
                                args.process_id, args.coordinator_timeout)
    if job is not None:  # a multi-process job: joined before Keras builds anything
        cluster.start(job)
    from vaelab.training import trainer
    if args.resume is not None:
        trainer.resume(args.resume, overrides=given, verbose=verbose)
    else:
        trainer.train(config, args.out or _default_out(), overwrite=args.overwrite,
                       verbose=verbose)


def _launch(args) -> int:
    from vaelab.dist import launch
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    launch.check_size(args.num_processes)
    launch.check_grace(args.grace)
    if train_args[:1] == ["train"]:  # the train options are checked here, once, not N times
        _train_config(build_parser().parse_args(train_args))
    return launch.launch(args.num_processes, train_args, grace=args.grace)


def _evaluate(args) -> None:
    from vaelab.analysis import evaluation
    evaluation.evaluate(args.run_dir, k=args.k, data_dir=args.data_dir, verbose=not args.quiet,
                        test_size=args.test_size, force=args.force)


def _tutorial_build(args) -> None:
    from vaelab.teaching import tutorial
    paths = tutorial.build(args.out, args.source, overwrite=args.overwrite, fmt=args.format)
    for kind, path in paths.items():
        print(f"{kind}: {path}")


def _tutorial_run(args) -> None:
    from vaelab.teaching import tutorial
    paths = tutorial.run_notebook(args.notebook, out=args.out, quick=args.quick, html=args.html,
                                  cell_timeout=args.timeout)
    for kind, path in paths.items():
        print(f"{kind}: {path}")


def _tutorial_check(args) -> int:
    from vaelab.teaching import grading
    return grading.main(args.submissions, as_json=args.json, csv_path=args.csv,
                        timeout=args.timeout, jobs=args.jobs, seed=args.seed,
                        feedback=args.feedback, use_sandbox=not args.no_sandbox,
                        memory=args.memory, scratch=args.scratch)


def _explore(args) -> None:
    from vaelab.analysis import explorer
    print(explorer.write_explorer(args.run_dir, out=args.out, data_dir=args.data_dir))


def _sample(args) -> None:
    from vaelab.analysis import plots
    print(plots.write_samples(args.run_dir, out=args.out, n=args.n, label=args.label,
                              seed=args.seed))


def _plan(args) -> None:
    """``vaelab lab`` and ``vaelab ablate``: a new plan, or ``--resume DIR`` with the plan's
    own settings (one line names an option given with it)."""
    from vaelab.experiments import runner

    if args.func == "lab":
        from vaelab.experiments.lab import LAB as kind
    else:
        from vaelab.experiments.ablation import ABLATION as kind
    verbose = not args.quiet
    if args.resume is None:
        runner.run_plan(kind, args.out or kind.default_out, quick=args.quick,
                        seeds=kind.default_seeds if args.seeds is None else args.seeds,
                        data_dir=args.data_dir, overwrite=args.overwrite, verbose=verbose,
                        together=args.together)
        return
    given = [name for name, value in (
        ("--out", args.out is not None), ("--quick", args.quick),
        ("--seeds", args.seeds is not None), ("--data-dir", args.data_dir is not None),
        ("--overwrite", args.overwrite)) if value]
    if given:
        raise UsageError(f"--resume takes the settings {args.resume} was started with; "
                         f"{given[0]} does not apply")
    runner.resume_plan(kind, args.resume, verbose=verbose, together=args.together)


def run(args) -> int:
    """Run the parsed command; returns the exit status."""
    try:
        status = _run(args)
    except BaseException as exc:
        if not cluster.joined():
            raise
        if cluster.lost_contact(exc):  # another process went away before or after the fit
            print(f"vaelab: error: {cluster.lost_contact_message(exc)}", file=sys.stderr)
        else:
            traceback.print_exc()
        status = 1
    if status and cluster.joined():
        # A failing process of a job leaves at once: JAX's exit barrier would wait for the
        # others, which may wait in a training step for this one.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def _run(args) -> int:
    """Run the command; user-caused errors become one line and an exit status."""
    try:
        with signals.handled(command=True):
            status = HANDLERS[args.func](args)
    except (UsageError, data.DataError, data.DataMismatch) as exc:
        print(f"vaelab: error: {exc}", file=sys.stderr)
        return 2
    except (NotebookFailed, JobFailed) as exc:
        print(f"vaelab: error: {exc}", file=sys.stderr)
        return 1
    except NonFiniteLoss as exc:
        print(f"vaelab: error: {exc}", file=sys.stderr)
        return 3
    except signals.Interrupted as exc:
        detail = f" ({exc.checkpoint})" if exc.checkpoint else ""
        print(f"vaelab: interrupted{detail}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("vaelab: interrupted", file=sys.stderr)
        return 130
    return status or 0


HANDLERS = {"data_fetch": _data_fetch, "data_info": _data_info, "train": _train,
            "launch": _launch, "evaluate": _evaluate, "tutorial_build": _tutorial_build,
            "tutorial_run": _tutorial_run, "tutorial_check": _tutorial_check,
            "explore": _explore, "sample": _sample, "lab": _plan, "ablate": _plan}
