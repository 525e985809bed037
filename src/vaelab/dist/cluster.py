"""Multi-process jobs on JAX's distributed runtime: one ``vaelab train`` per process.

``vaelab train --distribute --coordinator HOST:PORT --num-processes N --process-id I``
runs process I of an N-process job; on SLURM or Open MPI, ``--distribute`` alone lets
JAX read the same from the job's environment. :func:`start` connects this process
before Keras builds anything (CPU collectives over Gloo); Keras' ``DataParallel`` then
spans the devices of all processes, so every training step averages the gradients of
the whole global batch. Each process feeds its own rows of every global batch
(:func:`local_rows`, ``feeding.Feed``); process 0 alone writes the run
folder (:func:`is_writer`) and evaluates the trained model on a copy that lives on its
own devices (:func:`host_copy`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import ipaddress
import os
import socket
import sys
import time
import weakref

import keras
import numpy as np

from vaelab import choices
from vaelab.core.config import UsageError

COORDINATOR_TIMEOUT = choices.COORDINATOR_TIMEOUT  # seconds a process waits for the coordinator
HEARTBEAT_SECONDS = 20      # a process silent this long (killed, hung) stops the others
SHUTDOWN_SECONDS = 1800     # at exit, the others wait this long for process 0 to finish writing


@dataclasses.dataclass(frozen=True)
class Job:
    """This process's place in a multi-process job.

    ``coordinator`` is ``HOST:PORT`` (process 0 serves it, the others connect), or
    ``None`` when the cluster's environment says it (``cluster`` names which).
    """

    coordinator: str | None
    num_processes: int | None
    process_id: int | None
    timeout: float = COORDINATOR_TIMEOUT
    cluster: str | None = None


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for an IPv6 literal) → ``(host, port)``."""
    host, sep, port = str(text).rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if (not sep or not host or any(c.isspace() or c in "/[]" for c in host)
            or not (port.isascii() and port.isdecimal()) or not 0 < int(port) < 65536):
        raise UsageError(f"--coordinator expects HOST:PORT with a port in 1..65535, "
                         f"received {text!r}")
    return host, int(port)


def cluster_environment() -> str | None:
    """The batch system this process was started by as one task of several, if any:
    what ``jax.distributed.initialize()`` reads without arguments."""
    if "SLURM_JOB_ID" in os.environ and _int_env("SLURM_NTASKS") > 1:
        return "SLURM"
    if _int_env("OMPI_COMM_WORLD_SIZE") > 1:
        return "Open MPI"
    return None


def _int_env(name: str) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isascii() and value.isdecimal() else 0


def job_from_args(distribute: bool, coordinator: str | None, num_processes: int | None,
                  process_id: int | None, timeout: float | None = None) -> Job | None:
    """The job the ``train`` options (or the environment) describe; ``None`` for one process.

    Raises:
        UsageError: the options do not describe a job (one line naming the value).
    """
    given = [f"--{name}" for name, value in (("coordinator", coordinator),
                                             ("num-processes", num_processes),
                                             ("process-id", process_id),
                                             ("coordinator-timeout", timeout))
             if value is not None]
    if given and not distribute:
        verb = "needs" if len(given) == 1 else "need"
        raise UsageError(f"{', '.join(given)} {verb} --distribute (a multi-process job is "
                         f"data-parallel)")
    if timeout is not None and not (0 < timeout <= choices.MAX_WAIT_SECONDS):
        raise UsageError(f"--coordinator-timeout must be a positive number of seconds, at "
                         f"most {choices.MAX_WAIT_SECONDS}, received {timeout}")
    if num_processes is not None and num_processes < 1:
        raise UsageError(f"--num-processes must be at least 1, received {num_processes}")
    if process_id is not None and not 0 <= process_id < (num_processes or 1):
        raise UsageError(f"--process-id must be in 0..{(num_processes or 1) - 1}, "
                         f"received {process_id}")
    timeout = COORDINATOR_TIMEOUT if timeout is None else float(timeout)
    if coordinator is None:
        if (num_processes or 1) > 1:
            raise UsageError(f"--num-processes {num_processes} needs --coordinator HOST:PORT "
                             f"(or use: vaelab launch --num-processes {num_processes} -- train …)")
        cluster = cluster_environment() if distribute and num_processes is None else None
        return Job(None, None, None, timeout, cluster) if cluster else None
    parse_address(coordinator)
    missing = [name for name, value in (("--num-processes", num_processes),
                                        ("--process-id", process_id)) if value is None]
    if missing:
        raise UsageError(f"--coordinator needs {' and '.join(missing)}")
    return Job(coordinator, num_processes, process_id, timeout)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _wait_for_coordinator(host: str, port: int, timeout: float) -> None:
    """Until something accepts on ``host:port`` (process 0's coordinator), at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(5.0, timeout)):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise UsageError(f"cannot reach the coordinator {host}:{port} within "
                                 f"{timeout:g} s (is process 0 running, and is the "
                                 f"address right?)") from None
            time.sleep(0.2)


def _check_can_listen(host: str, port: int) -> None:
    """Process 0 serves the coordinator: the port must be free on that address."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind(address)
    except OSError as exc:
        raise UsageError(f"process 0 cannot serve the coordinator on {host}:{port}: "
                         f"{exc.strerror or exc}") from None


def start(job: Job) -> None:
    """Join the job (``jax.distributed.initialize``); must run before Keras builds anything.

    A loopback coordinator (``127.0.0.1``, ``localhost``) is served on that address only;
    any other is served on all interfaces, as JAX does, so that other machines reach it.
    A process other than 0 first waits for the coordinator to accept, at most
    ``job.timeout`` seconds, and then fails with one line naming the address.
    """
    if keras.backend.backend() != "jax":
        raise UsageError(f"a multi-process job needs the JAX backend (JAX's distributed "
                         f"runtime); this is KERAS_BACKEND={keras.backend.backend()}")
    import jax

    if jax.distributed.is_initialized():
        return
    settings = dict(initialization_timeout=max(1, int(np.ceil(job.timeout))),
                    heartbeat_timeout_seconds=HEARTBEAT_SECONDS,
                    shutdown_timeout_seconds=SHUTDOWN_SECONDS)
    if job.coordinator is None:  # SLURM, Open MPI: JAX reads the job from the environment
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(**settings)
        return
    host, port = parse_address(job.coordinator)
    bind = None
    if job.process_id == 0:
        bind = f"{job.coordinator}" if _is_loopback(host) else None
        _check_can_listen(host if bind else "0.0.0.0", port)
    else:
        _wait_for_coordinator(host, port, job.timeout)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU all-reduce
    jax.distributed.initialize(coordinator_address=job.coordinator,
                               num_processes=job.num_processes, process_id=job.process_id,
                               coordinator_bind_address=bind, **settings)


def joined() -> bool:
    """Whether this process has joined a multi-process job (JAX's runtime is up)."""
    jax = sys.modules.get("jax")
    return jax is not None and jax.distributed.is_initialized()


def lost_contact(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that failed because another process went away: JAX
    raises it as ``JaxRuntimeError`` or (inside ``device_put``) ``ValueError``, with the
    collectives library's message (Gloo on CPU, NCCL on GPUs)."""
    text = str(exc)
    return joined() and isinstance(exc, Exception) and ("Gloo" in text or "NCCL" in text)


def lost_contact_message(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (f"process {process_index()} of {process_count()} lost contact with the others "
            f"({lines[0] if lines else type(exc).__name__})")


def barrier(name: str) -> None:
    """Wait until every process of the job gets here (nothing to wait for alone)."""
    if process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def process_count() -> int:
    """Processes in this job (1 without the distributed runtime, or off JAX)."""
    if keras.backend.backend() != "jax":
        return 1
    import jax

    return jax.process_count()


def process_index() -> int:
    if keras.backend.backend() != "jax":
        return 0
    import jax

    return jax.process_index()


def is_writer() -> bool:
    """Whether this process writes the run folder: process 0 of a job, or the only one."""
    return process_index() == 0


def local_rows(n: int, batch: int, count: int, index: int, order=None) -> np.ndarray:
    """This process's rows of every global batch, in the order it feeds them.

    The ``n`` rows ``order`` (default ``0 … n−1``) are cut into global batches of
    ``batch`` (the last may be shorter); of each batch, process ``index`` of ``count``
    takes the ``index``-th of ``count`` equal parts. Fed in ``batch // count`` rows at a
    time, process ``i``'s ``k``-th batch is its part of the ``k``-th global batch.

    Returns:
        ``(n // count,)`` int64 indices.

    Raises:
        ValueError: a batch, the last one included, does not split into ``count`` parts.
    """
    order = np.arange(n) if order is None else np.asarray(order)
    full, rest = divmod(n, batch)
    if batch % count or rest % count:
        raise ValueError(f"batches of {batch} rows ({rest} in the last) do not split over "
                         f"{count} processes")
    part, last = batch // count, rest // count
    rows = order[:full * batch].reshape(full, batch)[:, index * part:(index + 1) * part]
    tail = order[full * batch:][index * last:(index + 1) * last]
    return np.concatenate([rows.reshape(-1), tail]).astype(np.int64)


@contextlib.contextmanager
def without_distribution():
    """No Keras distribution inside: models built and run here stay on this process."""
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


_copies: "weakref.WeakKeyDictionary[keras.Model, keras.Model]" = weakref.WeakKeyDictionary()


def host_copy(model: keras.Model) -> keras.Model:
    """A copy of ``model`` on this process's devices, with the same variables' values.

    In a multi-process job the model's variables are replicated on every process's
    devices, so each process can read them, but saving, assigning or running the model
    itself is a collective step that every process must take. The copy involves no
    other process: process 0 saves it, predicts with it and draws its figures. It is
    built from the model's config (and compiled like it) once, and its variables,
    the optimizer's included, are refreshed at every call.
    """
    copy = _copies.get(model)
    with without_distribution():
        if copy is None:
            copy = keras.saving.deserialize_keras_object(
                keras.saving.serialize_keras_object(model))
            if getattr(model, "compiled", False):
                copy.compile_from_config(model.get_compile_config())
                copy.optimizer.build(copy.trainable_variables)
            _copies[model] = copy
        pairs = list(zip(copy.variables, model.variables, strict=True))
        if getattr(model, "optimizer", None) is not None and copy.optimizer is not None:
            pairs += zip(copy.optimizer.variables, model.optimizer.variables, strict=True)
        for target, source in pairs:
            target.assign(np.asarray(source.value))
    return copy


def weights_digest(model: keras.Model) -> str:
    """SHA-256 of the model's weights (values, in order): equal on every process of a job."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(np.asarray(weight.value)).tobytes())
    return digest.hexdigest()
