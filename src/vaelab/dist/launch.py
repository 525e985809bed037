"""``vaelab launch --num-processes N -- train …``: a multi-process job on this machine.

Starts N ``vaelab train … --distribute`` processes joined by a coordinator on
127.0.0.1 (a free port, served by process 0), shows process 0's output, and keeps the
job whole: when one process fails, the others are stopped (SIGTERM, then SIGKILL after
``grace`` seconds) and the launcher exits with the failing process's status and its
last line. Ctrl-C (or SIGTERM) stops them all the same way (the CLI turns the signal
into ``vaelab.signals.Interrupted``, exit status 130 or 143). This is how a multi-process
run is tried on one machine before a cluster (``docs/scaling.md``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vaelab import choices, machine, signals
from vaelab.core.config import UsageError

GRACE_SECONDS = choices.LAUNCH_GRACE_SECONDS  # between SIGTERM and SIGKILL when stopping
POLL_SECONDS = 0.1
# Resident memory of one `vaelab train` process of the lab's model on a CPU (JAX, Keras, the
# data): 0.78 GiB measured on the 2-core dev machine; what the launcher checks N against.
PROCESS_BYTES = 800 * 2**20
SET_BY_LAUNCH = ("--coordinator", "--num-processes", "--process-id")


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def commands(num_processes: int, train_args: list[str], port: int) -> list[list[str]]:
    """The command line of each process: ``train_args`` (starting with ``train``) plus
    ``--distribute`` and the job's coordinator, size and index."""
    check_size(num_processes)
    if not train_args or train_args[0] != "train":
        given = " ".join(train_args) or "nothing"
        raise UsageError(f"vaelab launch runs train: give -- train [OPTIONS], received {given}")
    for arg in train_args:
        if arg.split("=", 1)[0] in SET_BY_LAUNCH:
            raise UsageError(f"vaelab launch sets {arg.split('=', 1)[0]} itself; leave it out")
    extra = [] if "--distribute" in train_args else ["--distribute"]
    return [[sys.executable, "-m", "vaelab", *train_args, *extra,
             "--coordinator", f"127.0.0.1:{port}", "--num-processes", str(num_processes),
             "--process-id", str(i)] for i in range(num_processes)]


def check_size(num_processes: int) -> None:
    """Refuse, before anything starts, a job this machine cannot run: fewer than one process,
    more processes than cores (each step waits for the slowest, so they would only slow one
    another down), or more than its memory holds."""
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
        raise UsageError(f"--num-processes must be at least 1, received {num_processes}")
    cores = machine.usable_cores()
    if num_processes > cores:
        raise UsageError(f"--num-processes {num_processes} is more than the {cores} cores this "
                         f"machine gives vaelab; a job of at most {cores} processes fits")
    memory = machine.memory_bytes()
    if num_processes * PROCESS_BYTES > memory:
        raise UsageError(f"--num-processes {num_processes} needs about "
                         f"{num_processes * PROCESS_BYTES / 2**30:.1f} GiB (each process holds "
                         f"JAX and the model), more than this machine's {memory / 2**30:.1f} GiB")


def check_grace(grace) -> float:
    """``--grace``: seconds from 0 to a day."""
    if (isinstance(grace, bool) or not isinstance(grace, (int, float))
            or not 0 <= grace <= choices.MAX_WAIT_SECONDS):  # NaN fails the comparison too
        raise UsageError(f"--grace must be a number of seconds from 0 to "
                         f"{choices.MAX_WAIT_SECONDS}, received {grace}")
    return float(grace)


def _end_with_parent() -> None:  # pragma: no cover  (runs in the child, before exec)
    """Linux: the child gets SIGTERM if the launcher dies, even by SIGKILL."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def launch(num_processes: int, train_args: list[str], *, grace: float = GRACE_SECONDS) -> int:
    """Run the job; returns the exit status (0 when every process exited with 0).

    Process 0's output goes to this terminal; each other process's goes to a temporary
    log, whose last line is shown if that process fails.
    """
    check_grace(grace)
    port = free_port()
    argv = commands(num_processes, train_args, port)
    processes: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="vaelab-launch-") as folder:
        logs = [Path(folder) / f"process-{i}.log" for i in range(num_processes)]
        try:
            for i, command in enumerate(argv):
                output = None if i == 0 else open(logs[i], "wb")  # noqa: SIM115
                try:
                    processes.append(subprocess.Popen(
                        command, stdout=output, stderr=None if i == 0 else subprocess.STDOUT,
                        start_new_session=True,
                        preexec_fn=_end_with_parent if sys.platform == "linux" else None))
                finally:
                    if output is not None:
                        output.close()
            pids = ", ".join(str(p.pid) for p in processes)
            print(f"vaelab launch: {num_processes} process(es), PIDs {pids}, coordinator "
                  f"127.0.0.1:{port}; showing process 0's output", file=sys.stderr, flush=True)
            status, cause = _watch(processes, logs)
        finally:  # normal end, a failure, Ctrl-C or SIGTERM (vaelab.signals): none outlives us
            _stop(processes, grace)
    if cause:  # after the others are stopped, so that it is the last line on the terminal
        print(f"vaelab launch: {cause}; the others were stopped", file=sys.stderr, flush=True)
    return status


def _watch(processes: list[subprocess.Popen], logs: list[Path]) -> tuple[int, str]:
    """Until all exit with 0 (→ 0, "") or one fails (→ its status and why)."""
    while True:
        statuses = [p.poll() for p in processes]
        failed = [i for i, status in enumerate(statuses) if status]
        if failed:  # the cause first: a killed process, then one that did not lose contact
            i = min(failed, key=lambda i: (statuses[i] > 0, statuses[i] == 1, i))
            status = statuses[i]
            return (status if status > 0 else 128 - status), _failure(i, status, logs[i])
        if all(status == 0 for status in statuses):
            return 0, ""
        time.sleep(POLL_SECONDS)
        signals.check()


def _failure(index: int, status: int, log: Path) -> str:
    if status < 0:
        return f"process {index} was killed by {signal.Signals(-status).name}"
    reason = ""
    if index:  # process 0's own last line is already on the terminal
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()
                 if line.strip()] if log.exists() else []
        ours = [line for line in lines if line.startswith("vaelab:")]
        reason = f": {(ours or lines or ['(no output)'])[-1]}"
    return f"process {index} exited with status {status}{reason}"


def _stop(processes: list[subprocess.Popen], grace: float) -> None:
    """SIGTERM to every process still running (and its group), SIGKILL after ``grace`` s."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in running:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass
