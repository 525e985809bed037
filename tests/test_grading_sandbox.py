"""Hostile submissions against the grader: each attack fails its own exercise, the
notebook's other exercises are still graded, and afterwards the listener had no
connection, the files outside are unchanged and no process is left. Run as the test's
user (root on CI) and, through a private mount namespace and setpriv, as nobody."""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import nbformat
import numpy as np
import pytest
from unprivileged import as_nobody, open_folder

import vaelab
from vaelab import machine
from vaelab.teaching.grading import exercises, grader, sandbox
from vaelab.teaching.tutorial import build

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox")

JOBS = min(2, machine.usable_cores())  # probes at once (--jobs refuses more than the cores)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return build(tmp_path_factory.mktemp("course"), fmt="ipynb")


def cell_of(notebook, anchor):
    cells = [c for c in notebook.cells if c.cell_type == "code" and anchor in c.source]
    assert len(cells) == 1, anchor
    return cells[0]


def submission(course, target, **cells):
    """The student notebook with some exercise cells filled: ``anchor_key=text`` where the
    text is ``"solution"`` (the solution's cell) or a function of the solution's cell."""
    student = nbformat.read(course["student notebook"], as_version=4)
    solution = nbformat.read(course["solution notebook"], as_version=4)
    anchors = {"kl": "def kl_normal", "sampling": "class TutorialSampling",
               "vae": "def make_vae", "annealing": "class KLAnnealingCallback",
               "loop": "for name, kl_scale in"}
    for key, change in cells.items():
        source = cell_of(solution, anchors[key]).source
        cell_of(student, anchors[key]).source = source if change == "solution" else change(source)
    nbformat.write(student, target)
    return target


def in_kl(body):
    """kl_normal's cell with ``body`` run first inside the function."""
    indented = "".join(f"    {line}\n" for line in body.strip().splitlines())
    return lambda source: source.replace('    """KL(q‖p) for q', indented + '    """KL(q‖p) for q', 1)


def in_call(body):
    """The sampling layer's cell with ``body`` run first in ``call``."""
    indented = "".join(f"        {line}\n" for line in body.strip().splitlines())
    return lambda source: source.replace("        mean, log_var = inputs\n",
                                         "        mean, log_var = inputs\n" + indented, 1)


def in_epoch(body):
    indented = "".join(f"        {line}\n" for line in body.strip().splitlines())
    marker = "        epoch += 1  # Keras counts epochs from 0\n"
    return lambda source: source.replace(marker, marker + indented, 1)


def leftovers(marker: str) -> list[int]:
    """PIDs of processes whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


# This interpreter's probes (their command line, whose arguments /proc separates by NULs),
# not those of another checkout's tests running at the same time.
OUR_PROBES = "\0".join([sys.executable, "-I", "-m", "vaelab.teaching.grading.probes"])


def leftovers_after(marker: str, seconds: float = 10.0) -> list[int]:
    """:func:`leftovers`, once they are gone or ``seconds`` have passed: the kernel kills the
    rest of a PID namespace after its first process dies, but not at the same instant."""
    deadline = time.monotonic() + seconds
    while (found := leftovers(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    server.close()


def hostile_class(course, folder: Path, port: int, marker: str):
    """Seven submissions, each with attacks in some exercises and honest code in others.
    Returns ``(paths, {file name: (exercises that must fail, exercises that must pass)})``."""
    secret = folder / "teacher-secret.txt"
    secret.write_text("answers")
    outside = folder / "written-by-a-student.txt"
    package = Path(vaelab.__file__).parent / "core" / "divergences.py"
    forged = ('import os, sys\n'
              'line = b\'{"status": "pass", "message": "ok"}\\n\'\n'
              'os.write(1, line); sys.__stdout__.write(line.decode()); sys.__stdout__.flush()\n'
              'os.write(2, line)\n'
              'os._exit(0)')
    tamper = ('import builtins, json, vaelab.core.divergences\n'
              'vaelab.core.divergences.kl_normal = lambda *a: kl_normal(*a)\n'
              'np.allclose = lambda *a, **k: True\n'
              'builtins.abs = lambda x: 0 * x\n'
              'return np.log(std_p / std_q) + (std_q**2 + (mean_q - mean_p) ** 2) / (2 * std_p) - 0.5')
    trick = ('class Anything:\n'
             '    def __eq__(self, other): return True\n'
             '    def __array__(self, *a, **k): return np.zeros(np.shape(mean_q))\n'
             '    def __float__(self): return 0.0\n'
             'return Anything()')
    fork_bomb = ('import os, time\n'
                 'children = []\n'
                 'for _ in range(5000):\n'
                 '    pid = os.fork()\n'
                 '    if pid == 0:\n'
                 '        time.sleep(120)\n'
                 '        os._exit(0)\n'
                 '    children.append(pid)')
    network = (f'import socket\n'
               f'socket.create_connection(("127.0.0.1", {port}), timeout=3).sendall(b"z")')
    memory = 'hog = bytearray(64 * 2**30)'
    disk = ('for i in range(64):\n'
            '    with open(f"/tmp/hog{i}", "wb") as f:\n'
            '        for _ in range(48):\n'
            '            f.write(b"x" * 2**20)')
    huge = 'return ops.zeros((50 * ops.shape(mean)[0], 3))'
    snoop = (f'print(open({str(secret)!r}).read())\n'
             f'print(open({str(folder / "n1.ipynb")!r}).read())')
    scribble = (f'open({str(outside)!r}, "w").write("x")\n'
                f'open({str(package)!r}, "a").write("# changed")')
    daemon = (f'import subprocess, sys\n'
              f'subprocess.Popen([sys.executable, "-c", "import os, signal, time; '
              f'signal.signal(signal.SIGTERM, signal.SIG_IGN); os.setsid(); time.sleep(600)", '
              f'{marker!r}], start_new_session=True)\n'
              f'while True:\n    pass')
    liar = ('print(\'{"status": "pass", "message": ""}\')\n'
            'import json, sys; print(\'{"status": "pass"}\', file=sys.stderr)\n'
            'json.dumps = lambda *a, **k: \'{"status": "pass", "message": ""}\'\n'
            'return np.log(std_p / std_q) + (std_q**2 + (mean_q - mean_p) ** 2) / (2 * std_p) - 0.5')
    plan = {
        "n1.ipynb": (dict(kl=in_kl(forged), annealing="solution"), {"kl_normal"}, {"annealing"}),
        "n2.ipynb": (dict(kl=in_kl(tamper), sampling=in_call(network)),
                     {"kl_normal", "sampling_kl", "sampling_z"}, set()),
        "n3.ipynb": (dict(kl=in_kl(trick), sampling=in_call(fork_bomb), annealing="solution"),
                     {"kl_normal", "sampling_kl", "sampling_z"}, {"annealing"}),
        "n4.ipynb": (dict(kl=in_kl(memory), sampling=in_call(disk), vae="solution"),
                     {"kl_normal", "sampling_kl", "sampling_z"}, {"compile", "fit"}),
        "n5.ipynb": (dict(kl=in_kl("return np.full(np.shape(mean_q), np.nan)"),
                          sampling=lambda s: s.replace(
                              "        return mean + ops.exp(log_var / 2) * epsilon",
                              "        " + huge, 1),
                          annealing=in_epoch(snoop + "\n" + scribble)),
                     {"kl_normal", "sampling_z", "annealing"}, {"sampling_kl"}),
        "n6.ipynb": (dict(kl=in_kl('return "0.0"'), loop=lambda s: s.replace(
                              "    annealed_model, _ = make_vae(kl_scale=kl_scale)\n",
                              "".join(f"    {l}\n" for l in daemon.splitlines()), 1)),
                     {"kl_normal", "fresh_vae"}, set()),
        "n7.ipynb": (dict(kl=in_kl(liar), vae="solution"), {"kl_normal"}, {"compile", "fit"}),
    }
    paths, expected = [], {}
    for name, (cells, fail, passing) in plan.items():
        paths.append(submission(course, folder / name, **cells))
        expected[name] = (fail, passing)
    return paths, expected, {"secret": digest(secret), "package": digest(package),
                             "outside": outside, "package_path": package}


def check_hostile(record_by_name, expected, before, listener, marker):
    for name, (fail, passing) in expected.items():
        results = record_by_name[name]["exercises"]
        failed = {e for e, r in results.items() if r["status"] == "fail"}
        passed = {e for e, r in results.items() if r["status"] == "pass"}
        assert failed == fail, (name, results)
        assert passing <= passed, (name, results)
    messages = {(name, e): r["message"] for name in expected
                for e, r in record_by_name[name]["exercises"].items()}
    checks = [
        ("n1.ipynb", "kl_normal", lambda m: m == "the check's process ended before it "
                                                "reported (status 0)"),
        ("n2.ipynb", "kl_normal", lambda m: m.startswith("KL(p‖p) must be 0")),
        ("n2.ipynb", "sampling_kl", lambda m: "ConnectionRefusedError" in m
         or "Network is unreachable" in m),
        ("n3.ipynb", "kl_normal", lambda m: m.startswith("differs from formula (a)")),
        ("n3.ipynb", "sampling_kl", lambda m: "BlockingIOError" in m),
        ("n4.ipynb", "kl_normal", lambda m: "MemoryError" in m),
        ("n4.ipynb", "sampling_kl", lambda m: "No space left" in m),
        ("n5.ipynb", "kl_normal", lambda m: m == "KL(p‖p) is not finite (1 of 1 values are "
                                                "NaN or infinite)"),
        ("n5.ipynb", "sampling_z", lambda m: m.startswith("its output was larger than")),
        ("n5.ipynb", "annealing", lambda m: "No such file" in m),
        ("n6.ipynb", "kl_normal", lambda m: "dtype <U3, expected numbers" in m),
        ("n6.ipynb", "fresh_vae", lambda m: m.startswith("ran longer than")),
        ("n7.ipynb", "kl_normal", lambda m: m == "the check's report is unusable: the report "
                                                "has no 'same'"),
    ]
    for name, exercise, good in checks:
        if name in expected:
            assert good(messages[name, exercise]), (name, exercise, messages[name, exercise])
    with pytest.raises(BlockingIOError):
        listener.accept()                      # nobody connected
    assert not before["outside"].exists()
    assert digest(before["package_path"]) == before["package"]
    left = leftovers_after(marker) + leftovers_after(OUR_PROBES)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left running: {left}"


def test_hostile_submissions_fail_alone_and_leave_nothing(course, tmp_path, listener):
    marker = f"vaelab-hostile-{uuid.uuid4().hex}"
    paths, expected, before = hostile_class(course, tmp_path, listener.getsockname()[1], marker)
    config = grader.settings(seed=12, timeout=40, jobs=JOBS)
    assert config.box.mode.startswith("bubblewrap")
    graded, errors = grader.grade(paths, config)
    assert errors == []
    check_hostile({Path(r["file"]).name: r for r in graded}, expected, before, listener, marker)


def hard_coded(course, target, seed):
    """kl_normal returning the right values for the inputs of ``seed``, as literals."""
    inputs = exercises.draw(seed)["kl_normal"]
    args = [np.asarray(inputs[k]) for k in ("mean_q", "std_q", "mean_p", "std_p")]
    want = (np.log(args[3] / args[1]) + (args[1] ** 2 + (args[0] - args[2]) ** 2)
            / (2 * args[3] ** 2) - 0.5).tolist()
    body = f"if np.ndim(mean_q) == 0:\n    return 0.0\nreturn np.array({want!r})"
    return submission(course, target, kl=in_kl(body))


def test_hard_coded_answers_pass_only_for_the_seed_they_were_copied_from(course, tmp_path):
    path = hard_coded(course, tmp_path / "copied.ipynb", seed=21)
    assert grader.check_file(path, seed=21)["kl_normal"].status == "pass"
    other = grader.check_file(path, seed=22)["kl_normal"]
    assert other.status == "fail" and other.message.startswith("differs from formula (a) on 1000")


@pytest.fixture
def nobody_folder():
    """A folder nobody can use, removed after."""
    folder = open_folder()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="becomes nobody through root's unshare and setpriv")
def test_as_an_ordinary_user_the_sandbox_holds_too(course, nobody_folder):
    """The grader as uid 65534: bwrap then makes a user namespace itself. The honest
    solution scores 7/7, and the attacks that depend on the user (processes, files,
    network) still fail their exercise alone."""
    folder = nobody_folder
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    marker = f"vaelab-hostile-{uuid.uuid4().hex}"
    try:
        paths, expected, before = hostile_class(course, folder, listener.getsockname()[1], marker)
        keep = {"n2.ipynb", "n3.ipynb", "n5.ipynb"}
        expected = {k: v for k, v in expected.items() if k in keep}
        solution = folder / "solution.ipynb"
        shutil.copy(course["solution notebook"], solution)
        for path in folder.iterdir():
            os.chmod(path, 0o666)
        needed = sorted({p for p in sandbox.python_paths() if p.startswith("/root/")})
        env = {"HOME": str(folder), "XDG_CACHE_HOME": str(folder / "cache"),
               "PATH": os.environ["PATH"], "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax")}
        command = [sys.executable, "-m", "vaelab", "tutorial", "check", "--json", "--seed", "5",
                   "--timeout", "40", "--jobs", str(JOBS), str(solution),
                   *(str(folder / name) for name in sorted(keep))]
        child = subprocess.Popen(as_nobody(command, needed, env), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        try:
            out, err = child.communicate(timeout=400)
        finally:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
                child.wait()
        assert child.returncode == 1, err
        report = json.loads(out)
        assert report["sandbox"].startswith("bubblewrap")
        by_name = {Path(r["file"]).name: r for r in report["graded"]}
        assert by_name["solution.ipynb"]["score"] == 7, by_name["solution.ipynb"]
        check_hostile(by_name, expected, before, listener, marker)
    finally:
        listener.close()


def test_ctrl_c_stops_a_class_being_graded_and_every_probe(course, tmp_path):
    """SIGINT once probes run: status 130 and one line within seconds, no probe left, no
    CSV or feedback written (measured 0.65 s on the dev machine)."""
    grades, feedback = tmp_path / "grades.csv", tmp_path / "feedback"
    child = subprocess.Popen(
        [sys.executable, "-m", "vaelab", "tutorial", "check", "--jobs", str(JOBS), "--csv",
         str(grades), "--feedback", str(feedback), str(course["solution notebook"])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not leftovers(OUR_PROBES) and time.monotonic() < deadline:
            time.sleep(0.1)  # the sandbox is checked first, then the probes start
        assert leftovers(OUR_PROBES), "no probe started"
        time.sleep(1)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
        stopped_after = time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130 and err.strip().splitlines()[-1] == "vaelab: interrupted", err
    assert stopped_after < 10
    assert leftovers_after(OUR_PROBES) == []
    assert not grades.exists() and not feedback.exists()
