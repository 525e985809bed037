"""Property-based: every generated command-line value and every generated IDX file either
works or gives exit 2 with one line (exit 3, one line, when a generated learning rate makes
the loss non-finite); never a traceback."""

import contextlib
import gzip
import os
import tempfile
from pathlib import Path

import pytest
from conftest import make_idx_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaelab import cli

# Generated cases run, per test; conftest.py prints them at the end of the session and writes
# them to build/test-artifacts/property-cases.json.
COUNTS: dict[str, int] = {}


def run_cli(args):
    try:
        return cli.main(args)
    except SystemExit as exc:  # argparse's own errors
        return exc.code


def cases(n: int):
    """``n`` generated cases, no deadline (a case may compile a model), module fixtures."""
    return settings(max_examples=n, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def count(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


def check_one_line(status, capsys, allowed=(0, 2, 3)):
    err = capsys.readouterr().err
    assert status in allowed, (status, err)
    assert "Traceback" not in err
    if status in (2, 3):
        lines = [line for line in err.splitlines()
                 if not line.startswith(("warning: ", "vaelab: warning: "))]
        assert len(lines) == 1 and lines[0].startswith("vaelab"), err


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    make_idx_dir(folder, n_train=48, n_test=16, side=6)
    return folder


integers = st.one_of(st.integers(-3, 4), st.sampled_from([0, 2**31, 2**32, 10**12]))
texts = st.one_of(st.text(max_size=8), st.sampled_from(
    ["1/784", "1e400", "-1", "nan", "inf", "0", "1/0", "2:2", "4:8", "cyclical:3:0.5",
     "sigmoid:10:100", "sigmoid:1:1e308", "linear:1:1", "constant:0", "constant:-1",
     "cyclical:0:1", "cyclical:9:0.01", "a:b:c", ":", "1e-320"]))
OPTIONS = {
    "--epochs": st.integers(-1, 2).map(str) | texts,
    "--batch-size": integers.map(str) | texts,
    "--hidden-dim": st.integers(-1, 6).map(str) | st.sampled_from(["10000000000", "x"]),
    "--latent-dim": st.integers(-1, 3).map(str) | st.sampled_from(["10000000000", "1.5"]),
    "--kl-scale": texts,
    "--seed": integers.map(str) | texts,
    "--anneal": texts,
    "--schedule": texts,
    "--learning-rate": st.sampled_from(["0.001", "0", "-1", "nan", "inf", "1e30", "x"]),
    "--train-size": integers.map(str),
    "--test-size": integers.map(str),
    "--likelihood": st.sampled_from(["gaussian", "bernoulli", "poisson", ""]),
}


@cases(60)
@given(st.dictionaries(st.sampled_from(sorted(OPTIONS)), st.none(), max_size=4).flatmap(
    lambda keys: st.fixed_dictionaries({k: OPTIONS[k] for k in keys})))
def test_any_option_values_train_or_give_one_line(data_dir, capsys, values):
    count("train")
    with tempfile.TemporaryDirectory() as tmp:
        args = ["train", "--quiet", "--data-dir", str(data_dir), "--out", f"{tmp}/run",
                "--epochs", "1", "--hidden-dim", "4", "--latent-dim", "2", "--batch-size", "16"]
        for option, value in values.items():
            args += [f"{option}={value}"]
        check_one_line(run_cli(args), capsys)


NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte"]


@cases(200)
@given(name=st.sampled_from(NAMES),
       magic=st.one_of(st.binary(min_size=0, max_size=4),
                       st.sampled_from([b"\0\0\x08\x01", b"\0\0\x08\x03", b"\0\0\x09\x03"])),
       dims=st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 40), max_size=4),
       body=st.binary(max_size=64) | st.integers(0, 3000).map(lambda n: bytes(n)),
       gz=st.booleans())
def test_any_idx_file_loads_or_gives_one_line(capsys, name, magic, dims, body, gz):
    count("data info (IDX files)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_idx_dir(folder, n_train=8, n_test=4, side=4)
        (folder / name).unlink()
        header = magic + b"".join(d.to_bytes(4, "big") for d in dims)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(header + body))
        else:
            (folder / name).write_bytes(header + body)
        check_one_line(run_cli(["data", "info", "--data-dir", str(folder)]), capsys)




# ------------------------------------------------------------ every other command's options
#
# Each command gets generated values for each of its options (numbers in and out of range,
# text, paths of every kind); a case either does its job or ends with one line and status 2.
# Where a valid case would train for minutes (lab, ablate, launch), the data or a fixed train
# option makes every case stop at a check, so what is generated is still checked in full.

numbers = st.one_of(st.integers(-3, 4).map(str), st.sampled_from(
    ["0", "-0", "1e300", "nan", "inf", "-inf", "0.5", "x", "", "99999999999", "86401", "1e-9"]))
PATHS = ["", ".", "{missing}/x", "{file}", "{dir}", "{new}"]  # "." is the case's own folder


@contextlib.contextmanager
def case_folder():
    """A fresh folder that is also the working directory, so that a generated "." or a
    relative path writes nowhere else."""
    previous = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            yield tmp
        finally:
            os.chdir(previous)


def path_of(token: str, tmp: Path, suffix: str = "") -> str:
    (tmp / "file").write_text("not what vaelab wants")
    (tmp / "dir").mkdir(exist_ok=True)
    return token.format(missing=tmp / "missing", file=tmp / "file", dir=tmp / "dir",
                        new=tmp / f"new{suffix}")


def options(spec: dict) -> st.SearchStrategy:
    """Up to four of ``spec``'s options, each with a generated value (None: a flag)."""
    return st.dictionaries(st.sampled_from(sorted(spec)), st.none(), max_size=4).flatmap(
        lambda keys: st.fixed_dictionaries({k: spec[k] for k in keys}))


def argv(values: dict, tmp: Path, suffix: str = "") -> list[str]:
    args = []
    for option, value in values.items():
        if value is None:
            args.append(option)
        elif value in PATHS:
            args.append(f"{option}={path_of(value, tmp, suffix)}")
        else:
            args.append(f"{option}={value}")
    return args


@pytest.fixture(scope="module")
def finished(data_dir, tmp_path_factory):
    """A finished run and a finished conditional run on the tiny data."""
    from vaelab.core.config import TrainConfig
    from vaelab.training.trainer import train

    folder = tmp_path_factory.mktemp("finished")
    for name, conditional in (("run", False), ("cond", True)):
        train(TrainConfig(epochs=1, hidden_dim=4, latent_dim=2, batch_size=16,
                          conditional=conditional, data_dir=str(data_dir)),
              folder / name, verbose=False)
    return folder


paths = st.sampled_from(PATHS)
SAMPLE = {"--n": numbers, "--seed": numbers, "--label": numbers, "--out": paths}
EVALUATE = {"--k": st.integers(-2, 6).map(str) | numbers, "--test-size": numbers,
            "--data-dir": paths}
EXPLORE = {"--out": paths, "--data-dir": paths}


@cases(60)
@given(run=st.sampled_from(["run", "cond", "{missing}/x", "{file}", "{dir}"]),
       values=options(SAMPLE))
def test_any_sample_options(finished, capsys, run, values):
    count("sample")
    with case_folder() as tmp:
        folder = str(finished / run) if run in ("run", "cond") else path_of(run, Path(tmp))
        check_one_line(run_cli(["sample", folder, *argv(values, Path(tmp), ".png")]), capsys)


@cases(60)
@given(values=options(EVALUATE))
def test_any_evaluate_options(finished, capsys, values):
    count("evaluate")
    with case_folder() as tmp:
        args = ["evaluate", str(finished / "run"), "--quiet", *argv(values, Path(tmp))]
        if "--k" not in values:
            args += ["--k", "3"]
        check_one_line(run_cli(args), capsys)


@cases(40)
@given(values=options(EXPLORE))
def test_any_explore_options(finished, capsys, values):
    count("explore")
    with case_folder() as tmp:
        args = ["explore", str(finished / "run"), *argv(values, Path(tmp), ".html")]
        check_one_line(run_cli(args), capsys)


PLAN = {"--seeds": numbers, "--together": numbers, "--out": paths, "--resume": paths,
        "--overwrite": st.none(), "--quiet": st.none()}


@cases(80)
@given(command=st.sampled_from(["lab", "ablate"]), values=options(PLAN))
def test_any_lab_and_ablate_options(data_dir, capsys, command, values):
    """--quick on 48 images: every case stops at a check (the quick subset is 1024)."""
    count("lab / ablate")
    with case_folder() as tmp:
        args = [command, "--quick", "--data-dir", str(data_dir), *argv(values, Path(tmp))]
        if "--out" not in values and "--resume" not in values:
            args += ["--out", f"{tmp}/plan"]
        status = run_cli(args)
        check_one_line(status, capsys, allowed=(2,))


LAUNCH = {"--num-processes": numbers, "--grace": numbers}


@cases(60)
@given(values=options(LAUNCH))
def test_any_launch_options(capsys, values):
    """A train option that is refused keeps a valid case from starting a job."""
    count("launch")
    with case_folder() as tmp:
        status = run_cli(["launch", *argv(values, Path(tmp)), "--", "train", "--epochs", "0"])
    check_one_line(status, capsys, allowed=(2,))


TUTORIAL_BUILD = {"--out": paths, "--source": paths, "--format": st.sampled_from(
    ["both", "py", "ipynb", "pdf", ""]), "--overwrite": st.none()}
TUTORIAL_RUN = {"--timeout": numbers, "--out": paths, "--quick": st.none()}
TUTORIAL_CHECK = {"--jobs": numbers, "--timeout": numbers, "--memory": numbers,
                  "--scratch": numbers, "--seed": numbers, "--no-sandbox": st.none(),
                  "--csv": paths, "--feedback": paths, "--json": st.none()}


@cases(60)
@given(values=options(TUTORIAL_BUILD))
def test_any_tutorial_build_options(capsys, values):
    count("tutorial build")
    with case_folder() as tmp:
        args = ["tutorial", "build", *argv(values, Path(tmp))]
        if "--out" not in values:
            args += ["--out", f"{tmp}/tutorial"]
        check_one_line(run_cli(args), capsys, allowed=(0, 2))


@cases(40)
@given(notebook=st.sampled_from(["{missing}/x", "{file}", "{dir}", "{new}"]),
       values=options(TUTORIAL_RUN))
def test_any_tutorial_run_options(capsys, notebook, values):
    """No generated notebook is a real one (that would start a kernel): one line each."""
    count("tutorial run")
    with case_folder() as tmp:
        args = ["tutorial", "run", path_of(notebook, Path(tmp), ".ipynb"),
                *argv(values, Path(tmp), ".ipynb")]
        check_one_line(run_cli(args), capsys, allowed=(2,))


@cases(80)
@given(values=options(TUTORIAL_CHECK))
def test_any_tutorial_check_options(capsys, monkeypatch, values):
    """A submission without an exercise, so no probe runs; making the sandbox is not what
    is generated here (tests/test_grading_sandbox.py), so it is taken as made."""
    from vaelab.teaching.grading import sandbox

    monkeypatch.setattr(sandbox, "detect", lambda limits: sandbox.Sandbox(None))
    count("tutorial check")
    with case_folder() as tmp:
        (Path(tmp) / "essay.py").write_text("print('no exercise here')\n")
        args = ["tutorial", "check", str(Path(tmp) / "essay.py"), *argv(values, Path(tmp))]
        check_one_line(run_cli(args), capsys, allowed=(2,))


DATA = {"--dataset": st.sampled_from(["mnist", "fashion-mnist", "cifar", ""]),
        "--data-dir": st.sampled_from(["{missing}/x", "{file}", "{dir}", "", "tiny"])}


@cases(40)
@given(values=options(DATA))
def test_any_data_info_options(data_dir, capsys, values):
    """Always a --data-dir (without one, a missing cache would be fetched)."""
    count("data info")
    values = {**values, "--data-dir": values.get("--data-dir", "tiny")}
    with case_folder() as tmp:
        args = ["data", "info"]
        for option, value in values.items():
            if option == "--data-dir":
                value = str(data_dir) if value == "tiny" else path_of(value, Path(tmp))
            args.append(f"{option}={value}")
        check_one_line(run_cli(args), capsys, allowed=(0, 2))
