"""The ``vaelab`` command: parses arguments and calls one function per command.

Errors a user can cause (bad values, unusable data) are printed as one line
and exit with status 2; nothing else happens at import time.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

import numpy as np

import vaelab
from vaelab import data
from vaelab.core.config import (ACTIVATIONS, JobFailed, MODELS, NonFiniteLoss, NotebookFailed,
                                TrainConfig, UsageError)
from vaelab.core.schedules import LEARNING_RATE_SCHEDULES
from vaelab.data.sources import DATASETS, TITLES
from vaelab.dist import cluster
from vaelab.dist.cluster import COORDINATOR_TIMEOUT
from vaelab.dist.launch import GRACE_SECONDS
from vaelab.teaching.tutorial import FORMATS
from vaelab.training import interrupts


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
    if all(s == "ok" for s in status.values()):
        print(f"checksums:     verified {title} (all four SHA-256 match)")
    else:
        detail = ", ".join(f"{name} {s}" for name, s in status.items())
        print(f"checksums:     not verified {title} ({detail})")


def _default_out(prefix: str = "runs") -> str:
    import datetime

    return f"{prefix}/{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"


TRAIN_OPTIONS = ("epochs", "batch_size", "model", "conditional", "hidden_dim", "activation", "latent_dim", "kl_scale",
                 "beta", "free_bits", "objective", "likelihood", "dataset", "anneal",
                 "schedule", "learning_rate", "lr_schedule", "adam_epsilon", "seed", "data_dir", "train_size", "test_size",
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
    paths = tutorial.run_notebook(args.notebook, out=args.out, quick=args.quick, html=args.html)
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


def _lab(args) -> None:
    from vaelab.experiments import lab
    lab.run_lab(args.out, quick=args.quick, data_dir=args.data_dir, overwrite=args.overwrite,
                verbose=not args.quiet, seeds=args.seeds, together=args.together)


def _ablate(args) -> None:
    from vaelab.experiments import ablation
    ablation.run_ablation(args.out, seeds=args.seeds, quick=args.quick, data_dir=args.data_dir,
                          overwrite=args.overwrite, verbose=not args.quiet,
                          together=args.together)


TOGETHER_HELP = ("train up to N compatible runs (differing only in seed, KL scale, beta, free "
                 "bits or KL schedule) together as one population: same histories, one "
                 "compiled step (default: 8 on an accelerator, 1 = one by one on a CPU)")


def _int(text: str) -> int:
    """An integer argument; the range is checked with the rest of the config."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, received {text!r}") from None


def _path(text: str) -> str:
    """A file or folder argument: an empty string is refused, not read as the default."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a path, received {text!r}")
    return text


def _widths(text: str) -> tuple[int, ...]:
    """``--hidden 512`` or ``--hidden 200,200``: positive integer widths, comma separated."""
    parts = text.split(",")
    try:
        widths = tuple(int(p) for p in parts)
    except ValueError:
        widths = ()
    if not text.strip() or not widths or any(w <= 0 for w in widths):
        raise argparse.ArgumentTypeError(
            f"expected positive integer widths separated by commas (e.g. 512 or 200,200), "
            f"received {text!r}")
    return widths


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, received {text!r}") from None


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block), exit status 2, and no abbreviated
    options (``--hidden`` is not taken for ``--hidden-dim``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vaelab", description="Learn, train and diagnose variational autoencoders.")
    parser.add_argument("--version", action="version", version=f"vaelab {vaelab.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data_parser = commands.add_parser("data", help="fetch or inspect the MNIST files")
    data_commands = data_parser.add_subparsers(dest="data_command", required=True,
                                               metavar="SUBCOMMAND")
    fetch = data_commands.add_parser(
        "fetch", help="put a verified named dataset in the user cache (no-op when it is there)")
    fetch.add_argument("--dataset", choices=DATASETS, default="mnist", help="default mnist")
    fetch.set_defaults(func=_data_fetch)
    info = data_commands.add_parser("info", help="counts, label histogram and checksum status")
    info.add_argument("--dataset", choices=DATASETS, default="mnist",
                      help="the named dataset to show or check against (default mnist)")
    info.add_argument("--data-dir", type=_path,
                       help="a folder of MNIST-format IDX files (default: the cache)")
    info.set_defaults(func=_data_info)

    train = commands.add_parser(
        "train", help="train one VAE and write a run folder",
        description="Train the lab's VAE (784-512-32) and write config.json, history.csv, "
                    "model.keras, metrics.json and figures into a run folder.")
    train.add_argument("--epochs", type=_int, help="passes over the data (default 2)")
    train.add_argument("--batch-size", type=_int, help="default 32")
    train.add_argument("--model", choices=MODELS,
                       help="the encoder and decoder: mlp (the lab's, default) or conv "
                            "(two stride-2 convolutions each way; image side divisible by 4)")
    train.add_argument("--conditional", action="store_const", const=True,
                       help="a conditional VAE: the one-hot class label goes to the encoder "
                            "and the decoder")
    train.add_argument("--hidden", type=_widths, metavar="W[,W…]",
                       help="hidden widths of the MLP encoder, mirrored in the decoder "
                            "(default 512; 200,200 is two hidden layers)")
    train.add_argument("--hidden-dim", type=_int, help="one hidden width (same as --hidden W)")
    train.add_argument("--activation", choices=ACTIVATIONS, metavar="NAME",
                       help="of the hidden layers, a Keras activation (default relu): "
                            + ", ".join(ACTIVATIONS))
    train.add_argument("--latent-dim", type=_int, help="default 32")
    train.add_argument("--kl-scale",
                       help="multiplies the KL; a fraction or a number (default 1/784 for the "
                            "gaussian likelihood, 1 for bernoulli; 1 = unscaled)")
    train.add_argument("--beta", type=_float, metavar="B",
                       help="the KL term times B on top of the natural scale (default 1)")
    train.add_argument("--free-bits", type=_float, metavar="NATS",
                       help="each latent dimension's batch-mean KL counts at least NATS "
                            "(Kingma et al. 2016; default 0, off)")
    train.add_argument("--objective", metavar="elbo|iwae:K",
                       help="elbo (default) or the importance-weighted bound of K samples")
    train.add_argument("--likelihood", choices=["gaussian", "bernoulli"],
                       help="decoder likelihood: gaussian (the lab's MSE, default) or bernoulli "
                            "(logits, summed cross-entropy, images binarized)")
    train.add_argument("--anneal", metavar="START:DURATION",
                       help="the lab's linear KL annealing, e.g. 4:8")
    train.add_argument("--schedule", metavar="SPEC",
                       help="cyclical:CYCLES:RATIO, sigmoid:CENTER:STEEPNESS, linear:START:DURATION "
                            "or constant:WEIGHT")
    train.add_argument("--learning-rate", type=_float, help="Adam's (default 0.001)")
    train.add_argument("--lr-schedule", choices=LEARNING_RATE_SCHEDULES,
                       help="burda: the rate times 10^(-i/7) for 3^i passes, i = 0…7 "
                            "(Burda et al. 2015)")
    train.add_argument("--adam-epsilon", type=_float, metavar="EPS",
                       help="Adam's epsilon (default 1e-7)")
    train.add_argument("--seed", type=_int, help="default 0")
    train.add_argument("--dataset", choices=DATASETS,
                       help="the named dataset: mnist (default) or fashion-mnist")
    train.add_argument("--data-dir", type=_path,
                       help="a folder of MNIST-format IDX files (default: verified MNIST)")
    train.add_argument("--train-size", type=_int, help="use only the first N training images")
    train.add_argument("--test-size", type=_int, help="use only the first N test images")
    train.add_argument("--distribute", action="store_const", const=True,
                       help="data-parallel training over all devices (JAX backend): this "
                            "process's, or those of every process of a job")
    train.add_argument("--coordinator", metavar="HOST:PORT",
                       help="with --distribute: the job's coordinator, served by process 0 "
                            "(see docs/scaling.md; vaelab launch sets it)")
    train.add_argument("--num-processes", type=_int, metavar="N",
                       help="with --coordinator: processes in the job")
    train.add_argument("--process-id", type=_int, metavar="I",
                       help="with --coordinator: this process's index, 0..N-1 (0 writes)")
    train.add_argument("--coordinator-timeout", type=_float, metavar="SECONDS",
                       help=f"how long to wait for the coordinator "
                            f"(default {COORDINATOR_TIMEOUT:g})")
    train.add_argument("--out", type=_path,
                       help="run folder (default runs/<timestamp>)")
    train.add_argument("--overwrite", action="store_true", help="reuse a non-empty --out folder")
    train.add_argument("--resume", metavar="RUN_DIR", type=_path,
                       help="continue an interrupted run from its last checkpoint")
    train.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    train.set_defaults(func=_train)

    launch = commands.add_parser(
        "launch", help="run vaelab train as a multi-process job on this machine",
        description="Starts N `vaelab train --distribute` processes joined by a coordinator on "
                    "127.0.0.1, shows process 0's output (process 0 writes the run folder), and "
                    "stops all of them when one fails or on Ctrl-C. Example: vaelab launch "
                    "--num-processes 2 -- train --epochs 5 --out runs/two")
    launch.add_argument("--num-processes", type=_int, required=True, metavar="N",
                        help="processes to start; process 0 writes the run folder")
    launch.add_argument("--grace", type=_float, default=GRACE_SECONDS, metavar="SECONDS",
                        help="between SIGTERM and SIGKILL when stopping the processes "
                             f"(default {GRACE_SECONDS:g})")
    launch.add_argument("train_args", nargs=argparse.REMAINDER, metavar="-- train [OPTIONS]")
    launch.set_defaults(func=_launch)

    evaluate = commands.add_parser(
        "evaluate", help="ELBO, IWAE likelihood and latent diagnostics of a finished run",
        description="Writes evaluation.json into RUN_DIR: ELBO, IWAE NLL with k samples per "
                    "image, KL, KL per dimension, active units, mutual information.")
    evaluate.add_argument("run_dir", metavar="RUN_DIR", type=_path)
    evaluate.add_argument("--k", type=_int, default=5000, help="importance samples per image "
                                                               "(default 5000)")
    evaluate.add_argument("--data-dir", type=_path,
                       help="a folder of MNIST-format IDX files "
                                             "(default: the run's data)")
    evaluate.add_argument("--test-size", type=_int, help="use only the first N test images")
    evaluate.add_argument("--force", action="store_true",
                          help="run a --k above 5000 (it prints its estimated time otherwise)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(func=_evaluate)

    explore = commands.add_parser(
        "explore", help="write an interactive latent-space page for a finished run",
        description="Writes one self-contained HTML page (weights embedded, no network needed): "
                    "latent sliders, drawing a digit to encode it, interpolation.")
    explore.add_argument("run_dir", metavar="RUN_DIR", type=_path)
    explore.add_argument("--out", type=_path,
                       help="the page to write (default RUN_DIR/explorer.html)")
    explore.add_argument("--data-dir", type=_path,
                       help="a folder of the run's data (default: the data the "
                                            "run recorded; needed for runs trained on arrays)")
    explore.set_defaults(func=_explore)

    sample = commands.add_parser(
        "sample", help="decode prior samples of a finished run into a PNG grid",
        description="Decodes z ~ N(0, I): for a conditional run all of --label, or one row per "
                    "class without it.")
    sample.add_argument("run_dir", metavar="RUN_DIR", type=_path)
    sample.add_argument("--label", type=_int, help="the class to draw (conditional runs)")
    sample.add_argument("--n", type=_int, default=64, help="samples (default 64)")
    sample.add_argument("--seed", type=_int, default=0, help="of the prior draws (default 0)")
    sample.add_argument("--out", type=_path,
                        help="the PNG to write (default RUN_DIR/samples-class-L.png or "
                             "samples-prior.png)")
    sample.set_defaults(func=_sample)

    tutorial = commands.add_parser("tutorial", help="the lab as a Python tutorial")
    tutorial_commands = tutorial.add_subparsers(dest="tutorial_command", required=True,
                                                metavar="SUBCOMMAND")
    tutorial_build = tutorial_commands.add_parser(
        "build", help="write the student and solution versions",
        description="Writes DIR/solution/lab11.py (exercise markers removed) and "
                    "DIR/student/lab11.py (each exercise replaced by its TODO hint).")
    tutorial_build.add_argument("--out", default="build/tutorial", type=_path,
                                help="default build/tutorial")
    tutorial_build.add_argument("--overwrite", action="store_true",
                                help="replace a student copy that has been edited")
    tutorial_build.add_argument("--source", type=_path,
                       help="a marked tutorial (default: the lab, shipped with vaelab)")
    tutorial_build.add_argument("--format", choices=FORMATS, default="both",
                                help="ipynb: lab11-student.ipynb and lab11-solution.ipynb; "
                                     "py: student/lab11.py and solution/lab11.py; both (default)")
    tutorial_build.set_defaults(func=_tutorial_build)
    tutorial_run = tutorial_commands.add_parser(
        "run", help="execute a notebook top to bottom and write the executed copy",
        description="Runs every cell in a fresh Python 3 kernel (needs vaelab[notebooks]); "
                    "for an answer key with every output and figure.")
    tutorial_run.add_argument("notebook", metavar="NOTEBOOK", type=_path)
    tutorial_run.add_argument("--out", type=_path,
                              help="the executed copy (default NOTEBOOK-executed.ipynb)")
    tutorial_run.add_argument("--quick", action="store_true",
                              help="the tutorial's small subset (about a minute)")
    tutorial_run.add_argument("--html", action="store_true",
                              help="also render the executed copy as HTML (nbconvert)")
    tutorial_run.set_defaults(func=_tutorial_run)
    tutorial_check = tutorial_commands.add_parser(
        "check", help="grade students' notebooks exercise by exercise, in a sandbox",
        description="Checks every exercise of each submission (.ipynb or percent-format .py; "
                    "a folder: every such file in it) on inputs drawn from a seed. Student "
                    "code runs in a sandbox (bubblewrap: no network, a read-only system, a "
                    "private /tmp, limits) and only reports numbers; this process decides. "
                    "Exit status: 0 all pass, 1 some fail or are not attempted, 2 unusable "
                    "input.")
    tutorial_check.add_argument("submissions", metavar="FILE_OR_FOLDER", nargs="+", type=_path)
    tutorial_check.add_argument("--json", action="store_true",
                                help="print the results as JSON (for gradebooks)")
    tutorial_check.add_argument("--csv", type=_path, metavar="FILE",
                                help="also write one row of scores per submission (once all "
                                     "are graded)")
    tutorial_check.add_argument("--feedback", type=_path, metavar="FOLDER",
                                help="write one Markdown feedback file per submission there")
    tutorial_check.add_argument("--jobs", type=_int, metavar="N",
                                help="checks run at once (default: the number of cores)")
    tutorial_check.add_argument("--seed", type=_int, metavar="S",
                                help="draw the checks' inputs from S, 0 to 2**32-1 (default: "
                                     "a fresh one, printed; the same S regrades identically)")
    tutorial_check.add_argument("--timeout", type=_float, default=120,
                                help="seconds per exercise (default 120)")
    tutorial_check.add_argument("--memory", type=_int, default=4096, metavar="MIB",
                                help="address space of each check's processes (default 4096)")
    tutorial_check.add_argument("--scratch", type=_int, metavar="MIB",
                                help="size of the sandbox's private /tmp (default 128)")
    tutorial_check.add_argument("--no-sandbox", action="store_true",
                                help="run student code without a sandbox, with your rights "
                                     "(only for code you trust)")
    tutorial_check.set_defaults(func=_tutorial_check)

    lab = commands.add_parser(
        "lab", help="run the whole VAE lab and write report.md and report.html",
        description="The lab in order: the custom-dense classifier, the VAE with KL/784, the "
                    "same without /784 (mode collapse), and KL annealing with and without /784.")
    lab.add_argument("--out", default="runs/lab", type=_path, help="folder for the runs and reports "
                                                       "(default runs/lab)")
    lab.add_argument("--quick", action="store_true",
                     help="a small subset and few epochs: the same pipeline in about a minute")
    lab.add_argument("--data-dir", type=_path,
                       help="a folder of MNIST-format IDX files (default: verified MNIST)")
    lab.add_argument("--overwrite", action="store_true", help="reuse a non-empty --out folder")
    lab.add_argument("--seeds", type=_int, default=1, metavar="N",
                     help="train every VAE experiment with seeds 0 … N-1; the report gives "
                          "mean ± std and verdicts only where all seeds agree (default 1)")
    lab.add_argument("--together", type=_int, metavar="N", help=TOGETHER_HELP)
    lab.add_argument("--quiet", action="store_true", help="no progress bars")
    lab.set_defaults(func=_lab)

    ablate = commands.add_parser(
        "ablate", help="which methods keep the unscaled VAE (KL × 1) from collapsing",
        description="Trains the lab's VAE with the KL unscaled for 20 epochs under each method "
                    "(nothing, cyclical annealing, free bits, beta < 1, and the lab's 1/784 as "
                    "reference) with several seeds; writes report.md, report.html and "
                    "ablation.png.")
    ablate.add_argument("--out", default="runs/ablate", type=_path,
                        help="folder for the runs and the report (default runs/ablate)")
    ablate.add_argument("--seeds", type=_int, default=3, metavar="N",
                        help="seeds 0 … N-1 for every method (default 3)")
    ablate.add_argument("--quick", action="store_true",
                        help="a small subset and 5 epochs: the same pipeline in minutes")
    ablate.add_argument("--data-dir", type=_path,
                        help="a folder of MNIST-format IDX files (default: verified MNIST)")
    ablate.add_argument("--overwrite", action="store_true", help="reuse a non-empty --out folder")
    ablate.add_argument("--together", type=_int, metavar="N", help=TOGETHER_HELP)
    ablate.add_argument("--quiet", action="store_true", help="no progress bars")
    ablate.set_defaults(func=_ablate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
        with interrupts.handled(command=True):
            status = args.func(args)
    except (UsageError, data.DataError, data.DataMismatch) as exc:
        print(f"vaelab: error: {exc}", file=sys.stderr)
        return 2
    except (NotebookFailed, JobFailed) as exc:
        print(f"vaelab: error: {exc}", file=sys.stderr)
        return 1
    except NonFiniteLoss as exc:
        print(f"vaelab: error: {exc}", file=sys.stderr)
        return 3
    except interrupts.Interrupted as exc:
        detail = f" ({exc.checkpoint})" if exc.checkpoint else ""
        print(f"vaelab: interrupted{detail}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("vaelab: interrupted", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
