import os
import subprocess
import sys

import pytest
from conftest import make_idx_dir, write_idx

import vaelab
from vaelab import cli

TINY = ["--epochs", "1", "--hidden-dim", "8", "--latent-dim", "2", "--quiet"]


def run_cli(args):
    """cli.main in-process; argparse's own errors exit through SystemExit."""
    try:
        return cli.main(args)
    except SystemExit as exc:
        return exc.code


@pytest.fixture
def data_dir(tmp_path):
    make_idx_dir(tmp_path / "data", n_train=64, n_test=16)
    return tmp_path / "data"


@pytest.mark.parametrize("args,message", [
    (["--epochs", "-1"], "epochs must be a positive integer, received -1"),
    (["--epochs", "0"], "epochs must be a positive integer, received 0"),
    (["--epochs", "2.5"], "argument --epochs: expected an integer, received '2.5'"),
    (["--batch-size", "0"], "batch-size must be a positive integer, received 0"),
    (["--latent-dim", "-4"], "latent-dim must be a positive integer, received -4"),
    (["--anneal", "4"], "--anneal expects START:DURATION (e.g. 4:8), received '4'"),
    (["--anneal", "4:x"], "DURATION in '4:x' must be an integer, received 'x'"),
    (["--schedule", "cyclical:4"], "--schedule cyclical expects cyclical:CYCLES:RATIO"),
    (["--anneal", "4:8", "--schedule", "sigmoid:5:1"], "give --anneal or --schedule, not both"),
    (["--kl-scale", "abc"], "--kl-scale must be a positive number or fraction such as 1/784, received 'abc'"),
    (["--kl-scale", "-1"], "received '-1'"),
    (["--kl-scale", "1/0"], "received '1/0'"),
    (["--batch-size", "1000"], "batch-size 1000 is larger than the 64 training images"),
])
def test_train_bad_values(tmp_path, data_dir, capsys, args, message):
    out = tmp_path / "run"
    code = run_cli(["train", *TINY, "--data-dir", str(data_dir), "--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_train_rejects_non_mnist_folder(tmp_path, data_dir, capsys):
    write_idx(data_dir / "train-labels-idx1-ubyte", [1, 2, 3])
    code = run_cli(["train", *TINY, "--data-dir", str(data_dir), "--out", str(tmp_path / "run")])
    assert code == 2
    assert "count mismatch" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    code = run_cli(["train", *TINY, "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "run")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_train_refuses_non_empty_out_unless_overwrite(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code = run_cli(["train", *TINY, "--data-dir", str(data_dir), "--out", str(out)])
    assert code == 2
    assert "exists and is not empty (pass --overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    code = run_cli(["train", *TINY, "--data-dir", str(data_dir), "--out", str(out), "--overwrite"])
    assert code == 0
    assert (out / "metrics.json").is_file() and (out / "notes.txt").read_text() == "mine"


def test_train_rejects_out_that_is_a_file(tmp_path, data_dir, capsys):
    out = tmp_path / "file"
    out.write_text("x")
    assert run_cli(["train", *TINY, "--data-dir", str(data_dir), "--out", str(out)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["data"], ["data", "info"], ["train"], ["lab"]])
def test_help_on_every_command(capsys, command):
    assert run_cli([*command, "--help"]) == 0
    assert "usage: vaelab" in capsys.readouterr().out


def test_console_script_error_has_no_traceback(tmp_path):
    env = {**os.environ, "VAELAB_DATA_DIR": str(tmp_path / "nowhere")}
    done = subprocess.run([sys.executable, "-m", "vaelab.cli", "train", "--epochs", "-3"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == "vaelab: error: epochs must be a positive integer, received -3\n"
    assert not (tmp_path / "runs").exists()


def test_train_rejects_unwritable_out(tmp_path, data_dir, capsys, monkeypatch):
    from vaelab.store import runs

    # Root can write anywhere, so permissions are simulated through os.access.
    monkeypatch.setattr(runs.os, "access", lambda path, mode: False)
    out = tmp_path / "new" / "run"
    assert run_cli(["train", *TINY, "--data-dir", str(data_dir), "--out", str(out)]) == 2
    assert "cannot be created" in capsys.readouterr().err and not out.exists()
    existing = tmp_path / "empty"
    existing.mkdir()
    assert run_cli(["train", *TINY, "--data-dir", str(data_dir), "--out", str(existing)]) == 2
    assert f"--out {existing} is not writable" in capsys.readouterr().err


@pytest.mark.parametrize("corrupt,message", [
    ("magic", "wrong magic number"), ("truncated", "truncated IDX file"),
    ("count", "count mismatch")])
def test_train_rejects_bad_idx_files(tmp_path, data_dir, capsys, corrupt, message):
    if corrupt == "magic":
        write_idx(data_dir / "train-labels-idx1-ubyte", [[[1]]] * 64)
    elif corrupt == "truncated":
        path = data_dir / "t10k-images-idx3-ubyte"
        path.write_bytes(path.read_bytes()[:-1])
    else:
        write_idx(data_dir / "t10k-labels-idx1-ubyte", [1] * 15)
    out = tmp_path / "run"
    assert run_cli(["train", *TINY, "--data-dir", str(data_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()


def console(args, code="import sys, vaelab_cli; sys.exit(vaelab_cli.main(sys.argv[1:]))"):
    """The console script's entry in a fresh interpreter that lists every module it imports
    (``-X importtime``, on standard error), bounded in time."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-X", "importtime", "-c", code, *args],
                          capture_output=True, text=True, timeout=120, env=env)


def imported(stderr: str) -> set[str]:
    return {line.split("|")[-1].strip() for line in stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


@pytest.mark.parametrize("args,status", [(["--help"], 0), (["train", "--help"], 0),
                                         (["--version"], 0), (["train", "--epoch", "3"], 2),
                                         (["evaluate"], 2)])
def test_the_console_script_answers_without_keras_or_jax(args, status):
    done = console(args)
    assert done.returncode == status, done.stderr[-2000:]
    heavy = {m for m in imported(done.stderr) if m.split(".")[0] in ("keras", "jax", "numpy")}
    assert not heavy, sorted(heavy)[:5]
    assert "vaelab.cli.parser" in imported(done.stderr)
    if args == ["train", "--help"]:
        assert "--activation NAME" in done.stdout and "log_softmax" in done.stdout
    if status == 2:
        errors = [line for line in done.stderr.splitlines() if not line.startswith("import time")]
        assert errors == [{"--epoch": "vaelab: error: unrecognized arguments: --epoch 3",
                           "evaluate": "vaelab evaluate: error: the following arguments are "
                                       "required: RUN_DIR"}[args[1 if args[0] == "train" else 0]]]


def test_the_console_script_runs_a_command_with_vaelab_whole(data_dir):
    code = ("import sys, vaelab_cli; status = vaelab_cli.main(sys.argv[1:]); import vaelab, keras; "
            "print(status, keras.saving.get_registered_object('vaelab>VAEModel') is vaelab.VAEModel)")
    done = console(["data", "info", "--data-dir", str(data_dir)], code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "0 True"
    assert "train:         64 images of 28x28" in done.stdout


def test_after_a_usage_error_vaelab_still_imports_whole():
    code = ("import vaelab_cli\ntry:\n    vaelab_cli.main(['train', '--epoch', '3'])\n"
            "except SystemExit as exc:\n    print('exit', exc.code)\n"
            "import vaelab\nprint(vaelab.VAE.__name__, vaelab.__version__)")
    done = console([], code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["exit", "2", "VAE", vaelab.__version__]


@pytest.mark.parametrize("command,args,message", [
    ("lab", ["--quick"], "--resume takes the settings {dir} was started with; --quick does not apply"),
    ("lab", ["--out", "x"], "--resume takes the settings {dir} was started with; --out does not apply"),
    ("ablate", ["--seeds", "0"], "--resume takes the settings {dir} was started with; --seeds does not apply"),
    ("ablate", ["--overwrite"], "--resume takes the settings {dir} was started with; --overwrite does not apply"),
    ("lab", [], "--resume {dir}: no lab.json there; it is not a folder `vaelab lab` wrote"),
    ("ablate", [], "--resume {dir}: no ablate.json there; it is not a folder `vaelab ablate` wrote"),
])
def test_resuming_a_plan_refuses_new_settings_and_other_folders(tmp_path, capsys, command, args,
                                                                 message):
    assert run_cli([command, "--resume", str(tmp_path), *args]) == 2
    assert capsys.readouterr().err.strip() == "vaelab: error: " + message.format(dir=tmp_path)


def test_resuming_a_complete_or_damaged_plan_is_refused(tmp_path, capsys):
    (tmp_path / "lab.json").write_text('{"quick": true, "seeds": 1, "complete": true}')
    assert run_cli(["lab", "--resume", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == \
        f"vaelab: error: --resume {tmp_path}: the lab is already complete"
    (tmp_path / "lab.json").write_text('{"quick": true')
    assert run_cli(["lab", "--resume", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"vaelab: error: --resume {tmp_path}: "
                                              f"{tmp_path / 'lab.json'} is damaged (")


@pytest.mark.parametrize("entry", [["-c", "import sys, vaelab_cli; sys.exit(vaelab_cli.main())"],
                                   ["-m", "vaelab"]])
@pytest.mark.parametrize("args", [["train", "--help"], ["data", "info"]])
def test_a_reader_that_goes_away_ends_the_command_quietly(data_dir, entry, args):
    """``vaelab … | head``: the rest of the output is dropped, no traceback; status 141 where
    a command's own output met the closed pipe (argparse's help is written at exit, 0)."""
    if args[0] == "data":
        args = [*args, "--data-dir", str(data_dir)]
    child = subprocess.Popen([sys.executable, *entry, *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    child.stdout.close()  # gone before the first line
    try:
        err = child.stderr.read().decode()
        assert child.wait(timeout=120) == (141 if args[0] == "data" else 0), err
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert err == ""


def test_resuming_a_plan_whose_file_claims_a_billion_seeds_is_refused_at_once(tmp_path, capsys):
    (tmp_path / "lab.json").write_text('{"quick": true, "seeds": 1000000000, "runs": {}}')
    assert run_cli(["lab", "--resume", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"vaelab: error: --resume {tmp_path}: {tmp_path / 'lab.json'} is damaged (quick, seeds "
        f"or runs do not agree); start again with --overwrite")
