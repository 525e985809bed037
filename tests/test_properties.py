"""Property-based: every generated command-line value and every generated IDX file either
works or gives exit 2 with one line (exit 3, one line, when a generated learning rate makes
the loss non-finite); never a traceback."""

import gzip
import tempfile
from pathlib import Path

import pytest
from conftest import make_idx_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaelab import cli

COUNTS = {"options": 0, "idx": 0}  # generated cases run, reported by the last test


def run_cli(args):
    try:
        return cli.main(args)
    except SystemExit as exc:  # argparse's own errors
        return exc.code


def check_one_line(status, capsys):
    err = capsys.readouterr().err
    assert status in (0, 2, 3), (status, err)
    assert "Traceback" not in err
    if status in (2, 3):
        lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
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


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(sorted(OPTIONS)), st.none(), max_size=4).flatmap(
    lambda keys: st.fixed_dictionaries({k: OPTIONS[k] for k in keys})))
def test_any_option_values_train_or_give_one_line(data_dir, capsys, values):
    COUNTS["options"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        args = ["train", "--quiet", "--data-dir", str(data_dir), "--out", f"{tmp}/run",
                "--epochs", "1", "--hidden-dim", "4", "--latent-dim", "2", "--batch-size", "16"]
        for option, value in values.items():
            args += [f"{option}={value}"]
        check_one_line(run_cli(args), capsys)


NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte"]


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(NAMES),
       magic=st.one_of(st.binary(min_size=0, max_size=4),
                       st.sampled_from([b"\0\0\x08\x01", b"\0\0\x08\x03", b"\0\0\x09\x03"])),
       dims=st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 40), max_size=4),
       body=st.binary(max_size=64) | st.integers(0, 3000).map(lambda n: bytes(n)),
       gz=st.booleans())
def test_any_idx_file_loads_or_gives_one_line(capsys, name, magic, dims, body, gz):
    COUNTS["idx"] += 1
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


def test_report_generated_case_counts():
    """Not a check of vaelab: records how many generated cases ran (printed with -s)."""
    print(f"\nproperty cases run: {COUNTS}")
    assert COUNTS["options"] >= 1 and COUNTS["idx"] >= 1
