"""vaelab.dist.cluster: the job's options, each process's rows, and the host copy of a model.

The multi-process runs themselves are in test_multiprocess.py.
"""

import socket

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaelab import cli
from vaelab.core.config import UsageError
from vaelab.core.models import build_vae, compile_vae
from vaelab.dist import cluster


@pytest.mark.parametrize("text, expected", [("127.0.0.1:1234", ("127.0.0.1", 1234)),
                                            ("node-7.cluster:65535", ("node-7.cluster", 65535)),
                                            ("[::1]:80", ("::1", 80))])
def test_parse_address(text, expected):
    assert cluster.parse_address(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1", "127.0.0.1:", ":1234", "127.0.0.1:0",
                                  "127.0.0.1:65536", "127.0.0.1:x", "127.0.0.1:١٢", "a b:12",
                                  "http://host:12"])
def test_malformed_coordinator_is_one_line(text):
    with pytest.raises(UsageError, match=r"--coordinator expects HOST:PORT .* received"):
        cluster.parse_address(text)


@pytest.mark.parametrize("options, message", [
    (dict(distribute=False, coordinator="127.0.0.1:5000", num_processes=2, process_id=0),
     "--coordinator, --num-processes, --process-id need --distribute"),
    (dict(distribute=True, coordinator="127.0.0.1:5000", num_processes=0, process_id=0),
     "--num-processes must be at least 1, received 0"),
    (dict(distribute=True, coordinator="127.0.0.1:5000", num_processes=2, process_id=2),
     r"--process-id must be in 0..1, received 2"),
    (dict(distribute=True, coordinator="127.0.0.1:5000", num_processes=2, process_id=-1),
     r"--process-id must be in 0..1, received -1"),
    (dict(distribute=True, coordinator=None, num_processes=2, process_id=None),
     "--num-processes 2 needs --coordinator HOST:PORT"),
    (dict(distribute=True, coordinator="127.0.0.1:5000", num_processes=2, process_id=None),
     "--coordinator needs --process-id"),
    (dict(distribute=True, coordinator="127.0.0.1:5000", num_processes=2, process_id=0,
          timeout=float("nan")), "--coordinator-timeout must be a positive number"),
])
def test_job_options_refused(options, message):
    with pytest.raises(UsageError, match=message):
        cluster.job_from_args(**options)


def test_job_from_options_and_from_a_slurm_environment(monkeypatch):
    job = cluster.job_from_args(True, "127.0.0.1:5000", 2, 1, 3.0)
    assert job == cluster.Job("127.0.0.1:5000", 2, 1, 3.0)
    for name in ("SLURM_JOB_ID", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert cluster.job_from_args(True, None, None, None) is None  # one process
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert cluster.job_from_args(True, None, None, None) is None  # a one-task job
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert cluster.job_from_args(True, None, None, None).cluster == "SLURM"
    assert cluster.job_from_args(False, None, None, None) is None  # no --distribute


def test_unreachable_coordinator_is_one_line_within_the_timeout(tmp_path, capsys):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    status = cli.main(["train", "--distribute", "--coordinator", f"127.0.0.1:{port}",
                       "--num-processes", "2", "--process-id", "1", "--coordinator-timeout",
                       "0.5", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err == (f"vaelab: error: cannot reach the coordinator 127.0.0.1:{port} within "
                   f"0.5 s (is process 0 running, and is the address right?)")
    assert not (tmp_path / "run").exists()
    assert not cluster.joined()


def test_coordinator_port_in_use_is_one_line(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        status = cli.main(["train", "--distribute", "--coordinator", f"127.0.0.1:{port}",
                           "--num-processes", "2", "--process-id", "0",
                           "--out", str(tmp_path / "run")])
    assert status == 2
    assert f"process 0 cannot serve the coordinator on 127.0.0.1:{port}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 12), st.integers(0, 40), st.randoms())
def test_local_rows_rebuild_every_global_batch(count, per_process, n_batches, rng):
    """Concatenating the processes' k-th local batches gives the k-th global batch, in order."""
    batch = count * per_process
    rest = count * rng.randint(0, per_process - 1) if per_process > 1 else 0
    n = n_batches * batch + rest
    order = np.array(rng.sample(range(n), n), dtype=np.int64)
    shards = [cluster.local_rows(n, batch, count, i, order) for i in range(count)]
    assert all(len(s) == n // count for s in shards)
    rebuilt = []
    for start in range(0, n // count, per_process):  # the local batches, as fit cuts them
        rebuilt.extend(np.concatenate([s[start:start + per_process] for s in shards]))
    np.testing.assert_array_equal(rebuilt, order)


def test_local_rows_refuse_a_batch_that_does_not_split():
    with pytest.raises(ValueError, match=r"batches of 32 rows \(3 in the last\) do not split "
                                         r"over 2 processes"):
        cluster.local_rows(67, 32, 2, 0)


def test_host_copy_has_the_same_variables_and_predictions():
    vae = compile_vae(build_vae(20, 8, 2, seed=3))
    x = np.random.default_rng(0).random((16, 20), dtype=np.float32)
    vae.model.fit(x, x, epochs=1, batch_size=8, verbose=0)
    copy = cluster.host_copy(vae.model)
    assert copy is not vae.model
    for a, b in zip(copy.variables, vae.model.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(copy.optimizer.variables, vae.model.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(copy.predict(x, verbose=0), vae.model.predict(x, verbose=0),
                               rtol=1e-6)
    vae.model.fit(x, x, epochs=1, batch_size=8, verbose=0)  # a later call refreshes the copy
    assert cluster.host_copy(vae.model) is copy
    np.testing.assert_array_equal(np.asarray(copy.trainable_variables[0]),
                                  np.asarray(vae.model.trainable_variables[0]))
    assert cluster.weights_digest(copy) == cluster.weights_digest(vae.model)
    assert keras.distribution.distribution() is None
